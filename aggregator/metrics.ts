// Prometheus metrics (prom-client). One registry per app, so tests can build several apps.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FINDING_SEVERITY } from '../protocol/findings.js';
import type { ClusterViewStatus, NodeCounts } from '../protocol/api.js';
import type { Readiness } from '../protocol/illumio.js';

export type RejectReason =
  | 'unauthorized'
  | 'forbidden_audience'
  | 'forbidden_service_account'
  | 'forbidden_node'
  | 'forbidden_cluster'
  | 'forbidden_reader'
  | 'review_unavailable'
  | 'invalid_json'
  | 'invalid_report'
  | 'schema_version'
  | 'too_large'
  | 'unsupported_media_type'
  | 'other';

const DEFAULT_METRICS_PREFIX = 'nodeprep_aggregator_';
const GAUGES_NAMED_LIKE_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export interface MetricSources {
  nodes: () => NodeCounts;
  // Active findings by "<code>\0<severity>".
  findings: () => Map<string, number>;
  clusterView: () => ClusterViewStatus;
  readiness: () => Readiness;
  // Requests made to the Kubernetes API, by kind (absent with the cluster view off).
  kubeRequests: () => ReadonlyMap<string, number>;
}

export class Metrics {
  readonly registry = new Registry();
  readonly reportsReceived: Counter;
  readonly reportsRejected: Counter<'reason'>;
  readonly ingestSeconds: Histogram;
  readonly readsRejected: Counter<'reason'>;
  readonly reviews: Counter<'kind' | 'answer'>;
  private readonly viewErrors: Counter<'resource' | 'state'>;
  readonly publish: PublishMetrics;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: DEFAULT_METRICS_PREFIX });
    // prom-client names three gauges like counters (nodejs_active_{handles,requests,resources}_total),
    // which `promtool check metrics` rejects: "non-counter metrics should not have _total suffix".
    // Each is the sum of the same gauge without _total, by type, so nothing is lost.
    for (const name of GAUGES_NAMED_LIKE_COUNTERS) this.registry.removeSingleMetric(`${DEFAULT_METRICS_PREFIX}${name}`);
    this.reportsReceived = new Counter({ name: 'nodeprep_reports_received_total', help: 'Reports accepted (202).', registers });
    this.reportsRejected = new Counter({
      name: 'nodeprep_reports_rejected_total',
      help: 'Reports refused, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.ingestSeconds = new Histogram({
      name: 'nodeprep_report_ingest_seconds',
      help: 'Time from receiving a report to answering it, accepted reports only.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    new Gauge({ name: 'nodeprep_nodes_known', help: 'Nodes with a report in memory (stale ones included) or in the cluster view.', registers, collect() { this.set(sources.nodes().known); } });
    new Gauge({ name: 'nodeprep_nodes_reporting', help: 'Nodes with a live report.', registers, collect() { this.set(sources.nodes().reporting); } });
    new Gauge({ name: 'nodeprep_nodes_stale', help: 'Nodes silent for longer than NODE_TTL_SECONDS.', registers, collect() { this.set(sources.nodes().stale); } });
    new Gauge({
      name: 'nodeprep_cluster_nodes',
      help: 'Nodes of this cluster in the Kubernetes API (state="total") and how many of them report (state="reporting"); absent while the cluster view is off.',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        const counts = sources.nodes();
        if (counts.inApi === undefined) return;
        this.set({ state: 'total' }, counts.inApi);
        this.set({ state: 'reporting' }, counts.inApiReporting ?? 0);
      },
    });
    new Gauge({
      name: 'nodeprep_cluster_view_state',
      help: 'The cluster view\'s state: 1 for the current one of off, syncing, synced, degraded.',
      labelNames: ['state'],
      registers,
      collect() {
        const now = sources.clusterView().state;
        for (const state of ['off', 'syncing', 'synced', 'degraded']) this.set({ state }, state === now ? 1 : 0);
      },
    });
    new Gauge({
      name: 'nodeprep_cluster_view_resource_up',
      help: 'Per watched resource: 1 while its watch is up (or it is not served by the cluster), 0 while lost or forbidden.',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        for (const [resource, state] of Object.entries(sources.clusterView().resources ?? {})) this.set({ resource }, state === 'synced' || state === 'not served' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'nodeprep_readiness_step',
      help: 'The guide\'s steps (machine-ids, root-ca, sizing, calico-append): 1 for the state each is in (ready, not-ready, unknown).',
      labelNames: ['step', 'state'],
      registers,
      collect() {
        for (const step of sources.readiness().steps) for (const state of ['ready', 'not-ready', 'unknown']) this.set({ step: step.step, state }, step.state === state ? 1 : 0);
      },
    });
    new Gauge({
      name: 'nodeprep_ready',
      help: '1 when every step is ready and every node reports: C-VEN may be installed.',
      registers,
      collect() {
        this.set(sources.readiness().ready ? 1 : 0);
      },
    });
    this.readsRejected = new Counter({ name: 'nodeprep_reads_rejected_total', help: 'GETs of /v1/* and /metrics refused (401, 403), by reason.', labelNames: ['reason'], registers });
    for (const reason of ['unauthorized', 'forbidden_reader']) this.readsRejected.inc({ reason }, 0);
    this.reviews = new Counter({
      name: 'nodeprep_kube_reviews_total',
      help: 'TokenReviews, SubjectAccessReviews and pod look-ups: asked of the API server (answer="asked") or answered from the cache (answer="cached").',
      labelNames: ['kind', 'answer'],
      registers,
    });
    new Counter({
      name: 'nodeprep_kube_api_requests_total',
      help: 'Requests the aggregator made to the Kubernetes API, by kind: list (a page), watch, get, tokenreview, subjectaccessreview.',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const [kind, count] of sources.kubeRequests()) this.inc({ kind }, count);
      },
    });
    this.viewErrors = new Counter({
      name: 'nodeprep_cluster_view_errors_total',
      help: 'Watches lost (state="unreachable") or refused (state="forbidden"), per resource.',
      labelNames: ['resource', 'state'],
      registers,
    });
    new Gauge({
      name: 'nodeprep_findings_active',
      help: 'Active findings by code and severity.',
      labelNames: ['code', 'severity'],
      registers,
      collect() {
        // Every usual series, so a dashboard shows 0 rather than "no data"; a code raised at
        // another severity than its usual one adds its series while it lasts.
        this.reset();
        for (const [code, severity] of Object.entries(FINDING_SEVERITY)) this.set({ code, severity }, 0);
        for (const [key, count] of sources.findings()) {
          const [code, severity] = key.split('\0') as [string, string];
          this.set({ code, severity }, count);
        }
      },
    });
    for (const reason of ['unauthorized', 'forbidden_audience', 'forbidden_service_account', 'forbidden_node', 'forbidden_cluster', 'invalid_json', 'invalid_report', 'schema_version', 'too_large', 'unsupported_media_type']) {
      this.reportsRejected.inc({ reason }, 0);
    }
    this.publish = publishMetrics(registers);
  }

  /** A watched resource changed state (cluster/informers.ts). */
  viewResource(resource: string, state: string): void {
    if (state === 'forbidden' || state === 'unreachable') this.viewErrors.inc({ resource, state });
  }
}

// ---- publish/: the outlets (issue 21), in one block ----

export const REPORT_APIS = ['openreports.io/v1alpha1', 'wgpolicyk8s.io/v1alpha2', 'none'] as const;
export const EVENT_DROP_REASONS = ['rate_limited', 'burst', 'queue_full', 'rejected', 'failed'] as const;

export interface PublishMetrics {
  transitions: Counter<'transition' | 'code' | 'severity'>;
  reportWrites: Counter<'result'>;
  reportBytes: Gauge;
  reportApi: Gauge<'api'>;
  eventsWritten: Counter<'action'>;
  eventsDropped: Counter<'reason'>;
  valuesWrites: Counter<'result'>;
}

function publishMetrics(registers: Registry[]): PublishMetrics {
  const m: PublishMetrics = {
    transitions: new Counter({
      name: 'nodeprep_finding_transitions_total',
      help: 'Findings raised and resolved (one alert log line each), by transition, code and severity.',
      labelNames: ['transition', 'code', 'severity'],
      registers,
    }),
    reportWrites: new Counter({
      name: 'nodeprep_report_writes_total',
      help: 'Server-side applies of the report object (ClusterReport or ClusterPolicyReport "nodeprep"), by result (applied, failed).',
      labelNames: ['result'],
      registers,
    }),
    reportBytes: new Gauge({ name: 'nodeprep_report_bytes', help: 'Size of the report object last applied, in bytes of JSON.', registers }),
    reportApi: new Gauge({
      name: 'nodeprep_report_api_info',
      help: 'The API the report is written to: 1 for the current one of openreports.io/v1alpha1, wgpolicyk8s.io/v1alpha2 and none (neither is served).',
      labelNames: ['api'],
      registers,
    }),
    eventsWritten: new Counter({
      name: 'nodeprep_events_written_total',
      help: 'Kubernetes Events written: created (action="create") or counted again in their series (action="patch").',
      labelNames: ['action'],
      registers,
    }),
    eventsDropped: new Counter({
      name: 'nodeprep_events_dropped_total',
      help: 'Events not written, by reason: rate_limited (per object, as client-go\'s recorder), burst (the aggregator\'s own limit over all objects), queue_full, rejected (by the API server), failed (retries exhausted).',
      labelNames: ['reason'],
      registers,
    }),
    valuesWrites: new Counter({
      name: 'nodeprep_values_configmap_writes_total',
      help: 'Server-side applies of the Illumio values ConfigMap, by result (applied, failed).',
      labelNames: ['result'],
      registers,
    }),
  };
  for (const result of ['applied', 'failed']) {
    m.reportWrites.inc({ result }, 0);
    m.valuesWrites.inc({ result }, 0);
  }
  for (const action of ['create', 'patch']) m.eventsWritten.inc({ action }, 0);
  for (const reason of EVENT_DROP_REASONS) m.eventsDropped.inc({ reason }, 0);
  return m;
}
