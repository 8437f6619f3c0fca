// The outlets, listed: a new outlet is a file of this folder and a line here.
import type { Logger } from 'pino';
import type { KubeApi } from '../cluster/api.js';
import type { PublishConfig } from '../config.js';
import type { Engine } from '../engine.js';
import type { IllumioChecks } from '../illumio/checks.js';
import type { PublishMetrics } from '../metrics.js';
import { alertLog } from './alert-log.js';
import { ClusterReport, type ReportTiming } from './cluster-report.js';
import type { CorrelatorOptions } from './event-correlator.js';
import { homeNodeName, isHomeFinding } from './home-cluster.js';
import type { KeptObjectTiming } from './kept-object.js';
import { NodeEvents, type EventTiming } from './node-events.js';
import type { Outlet } from './outlet.js';
import { buildReport, type ReportLimits } from './report-object.js';
import { transitionMetrics } from './transition-metrics.js';
import { ValuesConfigMap } from './values-configmap.js';

/** Intervals and bounds, production defaults in each outlet's file; tests shorten them. */
export interface PublishTuning {
  report?: Partial<ReportTiming>;
  reportLimits?: ReportLimits;
  values?: Partial<KeptObjectTiming>;
  events?: { correlator?: Partial<CorrelatorOptions>; timing?: Partial<EventTiming> };
}

export interface OutletContext {
  log: Logger;
  metrics: PublishMetrics;
  engine: Engine;
  checks: IllumioChecks;
  // The home cluster's API; without it (cluster view off) only the log and the metrics.
  api: KubeApi | undefined;
  config: PublishConfig;
  tuning: PublishTuning;
  // The aggregator knows enough to write objects that replace what an earlier one wrote.
  ready: () => boolean;
  now?: () => number;
}

export function outletsFor(c: OutletContext): Outlet[] {
  const home = c.engine.homeCluster;
  const now = c.now ? { now: c.now } : {};
  const api = c.api;
  const outlets: (Outlet | false | undefined)[] = [
    alertLog(c.log),
    transitionMetrics(c.metrics),
    api && c.config.report && new ClusterReport({
      api, log: c.log, metrics: c.metrics, ready: c.ready, timing: c.tuning.report ?? {}, ...now,
      build: (reportApi) => buildReport({
        api: reportApi,
        readiness: c.checks.readiness(),
        findings: c.engine.book.all().filter((f) => isHomeFinding(home, f)),
        nodeName: (key) => homeNodeName(home, key),
        ...(c.tuning.reportLimits ? { limits: c.tuning.reportLimits } : {}),
      }),
    }),
    api && c.config.events && new NodeEvents({
      api, log: c.log, metrics: c.metrics, homeCluster: home, ...now,
      // Before the view has listed the Nodes, a report's node is taken to exist (an Event about
      // a Node that does not is harmless); after, a deleted Node gets no Event.
      nodeExists: (name) => c.engine.clusterView?.nodes.has(name) ?? true,
      ...(c.config.deployment ? { deployment: c.config.deployment } : {}),
      ...(c.tuning.events?.correlator ? { correlator: c.tuning.events.correlator } : {}),
      ...(c.tuning.events?.timing ? { timing: c.tuning.events.timing } : {}),
    }),
    api && c.config.valuesConfigMap && new ValuesConfigMap({
      api, log: c.log, metrics: c.metrics, ready: c.ready, timing: c.tuning.values ?? {}, ...now,
      ...c.config.valuesConfigMap,
      valuesYaml: () => c.checks.valuesYaml(),
    }),
  ];
  return outlets.filter((o): o is Outlet => Boolean(o));
}
