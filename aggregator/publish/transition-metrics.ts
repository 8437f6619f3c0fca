// The metrics' share of the transitions: a counter per raise and per resolve, so that a dashboard
// sees findings that came and went between two scrapes (nodeprep_findings_active, a gauge read
// at scrape time, cannot).
import type { PublishMetrics } from '../metrics.js';
import type { Outlet } from './outlet.js';

export function transitionMetrics(metrics: PublishMetrics): Outlet {
  return {
    name: 'metrics',
    transition: ({ kind, finding }) => metrics.transitions.inc({ transition: kind, code: finding.code, severity: finding.severity }),
  };
}
