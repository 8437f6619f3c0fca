// The Grafana dashboard the chart ships (charts/nodeprep/dashboards/nodeprep.json, in a ConfigMap
// for the kube-prometheus-stack's dashboard sidecar): how it is labelled and where it goes, and
// how it is built: a data source variable, namespace and job variables every query uses,
// $__rate_interval in every rate, and the panels issue 22 lists. test/alerts/live.test.ts runs
// every query against a real Prometheus.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { chartDir, render } from '../support/helm.js';
import { dashboard, renderMonitoring } from '../alerts/rendered.js';

const board = dashboard();
const panels = board.panels.filter((p) => p.type !== 'row');
const targets = panels.flatMap((p) => (p.targets ?? []).map((target) => ({ panel: p.title, ...target })));

t.test('a ConfigMap the sidecar loads, in the release namespace or the one chosen', async (t) => {
  const configMap = renderMonitoring().find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'nodeprep-dashboard')!;
  t.equal(configMap.metadata.labels.grafana_dashboard, '1', 'label grafana_dashboard="1"');
  t.equal(configMap.metadata.namespace, 'nodeprep');
  t.same(Object.keys(configMap.data), ['nodeprep.json']);
  t.same(JSON.parse(configMap.data['nodeprep.json']), JSON.parse(readFileSync(path.join(chartDir, 'dashboards/nodeprep.json'), 'utf8')), 'the file, as it is');
  const moved = render({ set: { 'aggregator.grafanaDashboard.enabled': true, 'aggregator.grafanaDashboard.namespace': 'monitoring', 'aggregator.grafanaDashboard.labels': { grafana_dashboard: null, team_dashboard: 'yes' }, 'aggregator.grafanaDashboard.annotations': { grafana_folder: 'Illumio' } } });
  const there = moved.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'nodeprep-dashboard')!;
  t.equal(there.metadata.namespace, 'monitoring', 'namespace override');
  t.equal(there.metadata.labels.team_dashboard, 'yes', 'a sidecar label of one\'s own');
  t.notOk('grafana_dashboard' in there.metadata.labels, 'instead of the default one');
  t.same(there.metadata.annotations, { grafana_folder: 'Illumio' });
  t.notOk(render().some((o) => o.metadata.name === 'nodeprep-dashboard'), 'off by default');
});

t.test('variables: a Prometheus data source, then namespace and job from nodeprep\'s own series', async (t) => {
  const vars = board.templating.list;
  t.same(vars.map((v) => [v.name, v.type]), [['datasource', 'datasource'], ['namespace', 'query'], ['job', 'query']]);
  t.equal(vars[0]!.query, 'prometheus');
  for (const v of vars.slice(1)) t.same(v.datasource, { type: 'prometheus', uid: '${datasource}' }, `${v.name} is asked of the chosen data source`);
  t.equal(board.uid, 'nodeprep', 'a stable uid: links and provisioning survive upgrades');
});

t.test('every query: the chosen data source, namespace and job, and $__rate_interval', async (t) => {
  t.ok(targets.length > 15, `${targets.length} queries`);
  for (const p of panels) t.same(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `${p.title}: the data source variable`);
  for (const q of targets) {
    const what = `${q.panel} / ${q.refId}`;
    const selectors = [...q.expr.matchAll(/\b(nodeprep_[a-z_]+)\{([^}]*)\}/g)];
    t.ok(selectors.length > 0, `${what}: reads nodeprep's series`);
    for (const [whole, , matchers] of selectors) t.match(matchers, /^namespace="\$namespace", job="\$job"/, `${what}: ${whole}`);
    t.notMatch(q.expr, /\bnodeprep_[a-z_]+(\[|\)|\s|$)/, `${what}: no series without the selector`);
    for (const [range] of q.expr.matchAll(/\[[^\]]+\]/g)) t.equal(range, '[$__rate_interval]', `${what}: ranges are $__rate_interval`);
  }
});

t.test('the panels the issue lists', async (t) => {
  const uses = (title: string, pattern: RegExp) => {
    const panel = panels.find((p) => p.title === title);
    t.ok(panel, `a panel "${title}"`);
    t.ok(panel?.targets?.some((q) => pattern.test(q.expr)), `"${title}" queries ${pattern}`);
  };
  uses('Readiness by step', /nodeprep_readiness_step/);
  uses('Active findings by code and severity', /sum by \(severity, code\) \(nodeprep_findings_active/);
  uses('Nodes: in the API, reporting, stale', /nodeprep_cluster_nodes\{[^}]*state="total"/);
  uses('Nodes: in the API, reporting, stale', /nodeprep_nodes_reporting/);
  uses('Nodes: in the API, reporting, stale', /nodeprep_nodes_stale/);
  uses('Reports accepted', /rate\(nodeprep_reports_received_total/);
  uses('Ingest latency', /histogram_quantile\(0\.99, sum by \(le\) \(rate\(nodeprep_report_ingest_seconds_bucket/);
  uses('Refused reports and reads by reason', /sum by \(reason\) \(rate\(nodeprep_reports_rejected_total/);
  uses('API requests by kind', /nodeprep_kube_api_requests_total/);
  uses('Token and access reviews', /nodeprep_kube_reviews_total/);
  uses('Memory', /nodeprep_aggregator_process_resident_memory_bytes/);
  uses('CPU', /rate\(nodeprep_aggregator_process_cpu_seconds_total/);
  const ids = board.panels.map((p) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
});
