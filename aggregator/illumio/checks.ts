// The guide's other two steps and the readiness answer, run against the live cluster: the root CA
// ConfigMap and the PCE's certificate (at start, when the ConfigMap changes, every 10 minutes),
// the workload count (a paginated, metadata-only list of pods every 10 minutes, never a watch of
// every pod), the sizing from the cluster view's Nodes, and C-VEN's and Kubelink's deployed
// resources. The deciding is in this folder's pure modules; this file only schedules and asks.
import type { Logger } from 'pino';
import type { IllumioSizing, Readiness } from '../../protocol/illumio.js';
import type { KubeApi } from '../cluster/api.js';
import type { ClusterFacts, WorkloadFacts } from '../cluster/facts.js';
import type { Engine } from '../engine.js';
import type { PceAddress, ProbeOptions } from './pce-tls.js';
import { assessReadiness } from './readiness.js';
import type { RootCaLocation } from './root-ca.js';
import { decideSizing, renderIllumioValues, type SizingInputs } from './sizing.js';
import { checkIllumioTrust, trustFacts, type IllumioTrust } from './trust.js';
import { detectUndersized, type DeployedWorkload } from './undersized.js';

export interface IllumioChecksOptions {
  engine: Engine;
  // The cluster's API (cluster view on); without it only the sizing inputs configured are known.
  api?: KubeApi;
  rootCa: RootCaLocation;
  pce?: PceAddress;
  policy?: { bytes: number; display: string };
  // Counted workloads replaced by the admin's figure.
  workloads?: number;
  expiringDays: number;
  log: Logger;
  intervalMs?: number;
  probeOptions?: ProbeOptions;
  now?: () => number;
}

// Kubernetes workloads as the sizing guide counts them: pods that are not hostNetwork (those are
// the node's own agents, not workloads C-VEN enforces policy on) and not finished.
export const WORKLOAD_SELECTOR = 'spec.hostNetwork=false,status.phase!=Succeeded,status.phase!=Failed';
const METADATA_ONLY = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';

const SCOPE = { trust: 'illumio-trust', undersized: 'illumio-undersized' };

export class IllumioChecks {
  private trust: IllumioTrust | undefined;
  // checkTrust runs from the ConfigMap watch and from the schedule, unordered, and a run can take
  // the probe's 10 s: each is numbered, and only the latest started may set the answer.
  private trustRuns = 0;
  private counted: { value: number; at: number } | undefined;
  private rootCaSeen = '';
  private workloadsSeen = '';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(private readonly options: IllumioChecksOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Checks now, then every interval (10 minutes). */
  start(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.intervalMs ?? 10 * 60_000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The cluster view changed: the ConfigMap or the deployed Illumio may have. */
  onFacts(facts: ClusterFacts): void {
    const rootCa = JSON.stringify(facts.illumio.rootCa ?? null);
    if (rootCa !== this.rootCaSeen) {
      this.rootCaSeen = rootCa;
      void this.checkTrust();
    }
    const deployed = JSON.stringify([facts.illumio.cven?.containers, facts.illumio.kubelink?.containers, facts.nodes.size]);
    if (deployed !== this.workloadsSeen) {
      this.workloadsSeen = deployed;
      this.checkUndersized();
    }
  }

  /** Everything that runs on the schedule; one run at a time. */
  refresh(): Promise<void> {
    this.running ??= (async () => {
      try {
        await Promise.all([this.checkTrust(), this.countWorkloads()]);
        this.checkUndersized();
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async checkTrust(): Promise<void> {
    const facts = this.options.engine.clusterView;
    // The ConfigMap is known only through the cluster view; not known yet, nothing to say yet.
    if (!facts || facts.illumio.rootCa === undefined) return;
    const configMap = facts.illumio.rootCa === null ? undefined : { ...this.options.rootCa, data: facts.illumio.rootCa.data, binaryData: facts.illumio.rootCa.binaryData };
    const run = ++this.trustRuns;
    const trust = await checkIllumioTrust({
      location: this.options.rootCa,
      configMap,
      ...(this.options.pce ? { pce: this.options.pce } : {}),
      now: new Date(this.now()),
      expiringDays: this.options.expiringDays,
      ...(this.options.probeOptions ? { probeOptions: this.options.probeOptions } : {}),
    });
    // A newer run started while this one waited: it read a newer ConfigMap (or the same one
    // later), so this answer is older than the one to come, and would overwrite it if kept.
    if (run !== this.trustRuns) return;
    this.trust = trust;
    this.options.engine.setFindings(SCOPE.trust, trust.findings);
  }

  /** Counts the workloads page by page (500 at a time, metadata only): a few KiB per page. */
  private async countWorkloads(): Promise<void> {
    const api = this.options.api;
    if (!api || this.options.workloads !== undefined) return;
    try {
      let count = 0;
      let next: string | undefined;
      do {
        const query = new URLSearchParams({ limit: '500', fieldSelector: WORKLOAD_SELECTOR });
        if (next) query.set('continue', next);
        const page = await api.call<{ items: unknown[]; metadata: { continue?: string } }>('GET', `/api/v1/pods?${query}`, undefined, { accept: METADATA_ONLY, kind: 'list' });
        count += page.items.length;
        next = page.metadata.continue || undefined;
      } while (next);
      this.counted = { value: count, at: this.now() };
    } catch (err) {
      // The last count stands; the sizing says when it was taken.
      this.options.log.warn({ err: (err as Error).message }, 'workloads not counted; keeping the last count');
    }
  }

  private checkUndersized(): void {
    const facts = this.options.engine.clusterView;
    if (!facts) return;
    const workload = (kind: string, w: WorkloadFacts | undefined): DeployedWorkload | undefined => (w ? { kind, namespace: w.namespace, name: w.name, containers: w.containers } : undefined);
    const cven = workload('DaemonSet', facts.illumio.cven);
    const kubelink = workload('Deployment', facts.illumio.kubelink);
    this.options.engine.setFindings(SCOPE.undersized, detectUndersized({ ...(cven ? { cven } : {}), ...(kubelink ? { kubelink } : {}) }, this.sizing()));
  }

  /** The guide's answer from what is known now. */
  sizing(): IllumioSizing {
    const { engine } = this.options;
    const facts = engine.clusterView;
    const inputs: SizingInputs = {};
    const counts = engine.counts();
    if (facts) inputs.nodes = { value: facts.nodes.size, source: 'Node objects in the API' };
    else if (counts.reporting > 0) inputs.nodes = { value: counts.reporting, source: 'reporting nodes (the cluster view is off)' };
    if (this.options.workloads !== undefined) inputs.workloads = { value: this.options.workloads, source: 'configured (WORKLOADS)' };
    else if (this.counted) inputs.workloads = { value: this.counted.value, source: `pods counted at ${new Date(this.counted.at).toISOString()} (not hostNetwork, not finished)` };
    if (this.options.policy) inputs.policyBytes = { value: this.options.policy.bytes, source: 'configured (POLICY_SIZE)' };
    return decideSizing(inputs);
  }

  valuesYaml(): string {
    return renderIllumioValues(this.sizing());
  }

  readiness(): Readiness {
    const { engine } = this.options;
    const facts = engine.clusterView;
    const home = engine.homeCluster;
    const ofHome = (node: string) => (home === '' ? !node.includes('/') : node.startsWith(`${home}/`));
    // This cluster's findings: about its nodes, or about no node (the cluster's own).
    const findings = engine.book.all().filter((f) => f.nodes.length === 0 || ofHome(f.nodes[0]!));
    const counts = engine.counts();
    const calicoSeen = engine.calicoNodes() > 0 || findings.some((f) => f.code.startsWith('CALICO_'));
    const calico = facts
      ? calicoSeen || facts.calico.calicoNode !== undefined || facts.calico.felixConfigurations.size > 0 || facts.calico.installation !== undefined ? 'in-use' : 'not-in-use'
      : calicoSeen ? 'in-use' : 'unknown';
    return assessReadiness({
      findings,
      clusterView: facts !== undefined,
      nodes: facts ? { reporting: counts.inApiReporting ?? 0, inCluster: counts.inApi ?? 0 } : { reporting: counts.reporting },
      calico,
      ...(this.trust ? { rootCa: trustFacts(this.trust) } : {}),
      sizing: this.sizing(),
    });
  }
}
