// Prometheus metrics (prom-client). One registry per app, so tests can build several apps.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FINDING_SEVERITY, type FindingCode } from '../protocol/findings.js';
import type { Transition } from './store.js';

export type RejectReason =
  | 'unauthorized'
  | 'invalid_json'
  | 'invalid_report'
  | 'schema_version'
  | 'too_large'
  | 'unsupported_media_type'
  | 'other';

export class Metrics {
  readonly registry = new Registry();
  readonly reportsReceived: Counter;
  readonly reportsRejected: Counter<'reason'>;
  readonly ingestSeconds: Histogram;
  private readonly findingsActive: Gauge<'code' | 'severity'>;

  constructor(nodes: { known: () => number; stale: () => number }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'nodeprep_aggregator_' });
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
    new Gauge({ name: 'nodeprep_nodes_known', help: 'Nodes with a report in memory, stale ones included.', registers, collect() { this.set(nodes.known()); } });
    new Gauge({ name: 'nodeprep_nodes_stale', help: 'Nodes silent for longer than NODE_TTL_SECONDS.', registers, collect() { this.set(nodes.stale()); } });
    this.findingsActive = new Gauge({
      name: 'nodeprep_findings_active',
      help: 'Active findings by code and severity.',
      labelNames: ['code', 'severity'],
      registers,
    });
    // Every series from the start, so a dashboard shows 0 rather than "no data".
    for (const [code, severity] of Object.entries(FINDING_SEVERITY)) this.findingsActive.set({ code, severity }, 0);
    for (const reason of ['unauthorized', 'invalid_json', 'invalid_report', 'schema_version', 'too_large', 'unsupported_media_type']) {
      this.reportsRejected.inc({ reason }, 0);
    }
  }

  onTransition({ kind, finding }: Transition): void {
    const labels = { code: finding.code as FindingCode, severity: finding.severity };
    if (kind === 'raised') this.findingsActive.inc(labels);
    else this.findingsActive.dec(labels);
  }
}
