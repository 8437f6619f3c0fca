// The report outlet (design.md section 10): the ClusterReport "nodeprep" (openreports.io), else
// the ClusterPolicyReport "nodeprep" (wgpolicyk8s.io) where only that is served, kept up to date
// by kept-object.ts. The CRDs are not ours to install (Kyverno and others ship them; two charts
// owning one CRD breaks upgrades), so which API is served is asked of the discovery endpoints
// (readable by every authenticated user through the built-in system:discovery role) and asked
// again until one is, so that a CRD installed later is written to without a restart.
import type { Logger } from 'pino';
import type { KubeApi } from '../cluster/api.js';
import type { PublishMetrics } from '../metrics.js';
import { REPORT_APIS } from '../metrics.js';
import { KeptObject, messageOf, type KeptObjectTiming } from './kept-object.js';
import type { Outlet } from './outlet.js';
import { REPORT_KINDS, REPORT_NAME, type BuiltReport, type ReportApi } from './report-object.js';

export interface ReportTiming extends KeptObjectTiming {
  // How often to ask which API is served while the report's kind is not (or only the older one is).
  discoveryMs: number;
}

// Coalesced to one write per 5 s; content worked out again every 10 s; read back every minute;
// the CRD looked for every 30 s (issue 21: picked up within a minute).
export const DEFAULT_REPORT_TIMING: ReportTiming = { minIntervalMs: 5_000, checkIntervalMs: 10_000, resyncMs: 60_000, debounceMs: 250, discoveryMs: 30_000 };

export interface ClusterReportOptions {
  api: KubeApi;
  log: Logger;
  metrics: PublishMetrics;
  // The report's content for an API, now.
  build: (api: ReportApi) => BuiltReport;
  // Whether the aggregator knows enough to write (the cluster view synced, the agents' first
  // reports in): a report written before would drop results and raise them again.
  ready: () => boolean;
  timing?: Partial<ReportTiming>;
  now?: () => number;
}

const PREFERRED: readonly ReportApi[] = ['openreports.io/v1alpha1', 'wgpolicyk8s.io/v1alpha2'];

export class ClusterReport implements Outlet {
  readonly name = 'report';
  private served: ReportApi | undefined;
  private readonly keeper: KeptObject;
  private readonly timing: ReportTiming;
  private timer: NodeJS.Timeout | undefined;
  private said = '';
  private discovering: Promise<void> | undefined;
  private stopped = true;
  // The last content built, for the scale test's figures and the logs.
  last: { bytes: number; listed: number; leftOut: number } | undefined;

  constructor(private readonly options: ClusterReportOptions) {
    this.timing = { ...DEFAULT_REPORT_TIMING, ...options.timing };
    this.keeper = new KeptObject({
      name: 'report',
      kind: 'report',
      api: options.api,
      log: options.log,
      timing: this.timing,
      mayCreate: true,
      target: () => this.target(),
      onApplied: (bytes) => {
        options.metrics.reportWrites.inc({ result: 'applied' });
        options.metrics.reportBytes.set(bytes);
      },
      onFailed: () => options.metrics.reportWrites.inc({ result: 'failed' }),
      // The kind went away (its CRD deleted): look for one again.
      onNotFound: () => {
        this.setServed(undefined);
        void this.discover();
      },
      ...(options.now ? { now: options.now } : {}),
    });
    this.setServed(undefined);
  }

  get api(): ReportApi | undefined {
    return this.served;
  }

  start(): void {
    this.stopped = false;
    this.keeper.start();
    void this.discover();
    this.timer = setInterval(() => {
      if (this.served !== PREFERRED[0]) void this.discover();
    }, this.timing.discoveryMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.discovering;
    await this.keeper.stop();
  }

  transition(): void {
    this.keeper.poke();
  }

  private target(): { path: string; object: object } | undefined {
    const api = this.served;
    if (!api || !this.options.ready()) return undefined;
    const built = this.options.build(api);
    this.last = { bytes: Buffer.byteLength(JSON.stringify(built.object)), listed: built.listed, leftOut: built.leftOut };
    return { path: `/apis/${api}/${REPORT_KINDS[api].plural}/${REPORT_NAME}`, object: built.object };
  }

  /** Which of the two APIs serves its report kind now; one discovery at a time. */
  discover(): Promise<void> {
    this.discovering ??= (async () => {
      try {
        for (const api of PREFERRED) {
          const served = await this.serves(api);
          if (served === 'unknown') return; // said; the next round asks again
          if (served) {
            this.setServed(api);
            return;
          }
        }
        this.setServed(undefined);
      } finally {
        this.discovering = undefined;
      }
    })();
    return this.discovering;
  }

  private async serves(api: ReportApi): Promise<boolean | 'unknown'> {
    try {
      const res = await this.options.api.request<{ resources?: { name: string }[] }>('GET', `/apis/${api}`, undefined, { kind: 'discovery', lane: 'writes' });
      if (res.status === 404) return false;
      if (res.status === 200) return (res.body.resources ?? []).some((r) => r.name === REPORT_KINDS[api].plural);
      this.say(`discovery ${res.status}`, () => this.options.log.warn({ api, status: res.status, err: messageOf(res.body) }, 'report: cannot ask which report API is served; asking again'));
    } catch (err) {
      this.say('discovery unreachable', () => this.options.log.warn({ api, err: (err as Error).message }, 'report: cannot ask which report API is served; asking again'));
    }
    return 'unknown';
  }

  private setServed(api: ReportApi | undefined): void {
    const before = this.served;
    this.served = api;
    for (const label of REPORT_APIS) this.options.metrics.reportApi.set({ api: label }, label === (api ?? 'none') ? 1 : 0);
    if (this.stopped && before === api) return;
    if (api === undefined) {
      this.say('none', () =>
        this.options.log.warn(
          { apis: PREFERRED, everySeconds: this.timing.discoveryMs / 1000 },
          'report: neither ClusterReport (openreports.io/v1alpha1) nor ClusterPolicyReport (wgpolicyk8s.io/v1alpha2) is served; not written until one is (the chart installs the OpenReports CRDs with aggregator.publish.report.installCrds=true)',
        ),
      );
      return;
    }
    if (before === api) return;
    this.said = '';
    const { kind } = REPORT_KINDS[api];
    if (before === 'wgpolicyk8s.io/v1alpha2') {
      this.options.log.warn({ api, was: before }, `report: now writing ${kind} ${REPORT_NAME}; the ClusterPolicyReport ${REPORT_NAME} is no longer updated (kubectl delete clusterpolicyreport ${REPORT_NAME})`);
    } else {
      this.options.log.info({ api }, `report: writing ${kind} ${REPORT_NAME} (${api})`);
    }
    this.keeper.forget();
    this.keeper.poke();
  }

  /** One log line per cause until the state changes. */
  private say(cause: string, log: () => void): void {
    if (this.said === cause) return;
    this.said = cause;
    log();
  }
}
