// The alerts and the dashboard against the real thing: Debian's Prometheus, as a process of this
// test, scrapes the built aggregator on loopback every second and evaluates the rules the real helm
// renders. Agents' reports with a duplicate machine ID make NodeprepMachineIdDuplicate go pending
// (and a wrong token NodeprepReportsRefused); every query of the dashboard, its variables
// substituted and $__rate_interval worked out as Grafana does, evaluates without error, and the
// core panels return data.
import t from 'tap';
import { eventually } from '../support/cluster.js';
import { PrometheusProcess, requirePrometheus } from '../support/prometheus.js';
import { startLocalAggregator } from './local-aggregator.js';
import { alertsByName, dashboard, ruleFile } from './rendered.js';

// As the chart's ServiceMonitor labels the target for release nodeprep in namespace nodeprep.
const JOB = 'nodeprep-aggregator';
const NAMESPACE = 'nodeprep';
const SCRAPE_SECONDS = 1;

/** Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval). */
function rateInterval(intervalSeconds: number, scrapeSeconds: number): string {
  return `${Math.max(intervalSeconds + scrapeSeconds, 4 * scrapeSeconds)}s`;
}

/** A query as Grafana sends it: the dashboard's variables replaced by the values chosen. */
function substitute(expr: string, vars: Record<string, string>): string {
  return expr.replace(/\$(__rate_interval|namespace|job)\b/g, (_, name: string) => {
    const value = vars[name];
    if (value === undefined) throw new Error(`no value for $${name}`);
    return value;
  });
}

// Panels that must show data here. The cluster view is off in this test, so the panels about the
// Kubernetes API have nothing to show, nor have two queries of core panels: the node counts from
// the API, and refused reads (without a cluster to ask, reads are open). All must still evaluate.
const CORE_PANELS = [
  'Ready for C-VEN',
  'Readiness by step',
  'Active findings by code and severity',
  'Active findings by severity',
  'Nodes: in the API, reporting, stale',
  'Reports accepted',
  'Ingest latency',
  'Refused reports and reads by reason',
  'Cluster view',
  'Memory',
  'CPU',
];
const NO_DATA_WITHOUT_CLUSTER_VIEW = /nodeprep_cluster_nodes|nodeprep_reads_rejected_total/;

const why = requirePrometheus();
if (why) t.plan(0, why);
else await run();

async function run(): Promise<void> {
  t.setTimeout(180_000);
  const local = await startLocalAggregator(t);
  const prometheus = await PrometheusProcess.start({
    targets: [{ job: JOB, address: local.address, labels: { namespace: NAMESPACE } }],
    rules: { 'nodeprep-rules.yaml': ruleFile() },
    intervalSeconds: SCRAPE_SECONDS,
  });
  t.teardown(() => prometheus.stop());
  const started = Date.now() / 1000;

  // Agents: a round of reports every second for as long as the test runs.
  let sending = true;
  const agents = (async () => {
    while (sending) {
      await local.sendRound();
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  t.teardown(async () => {
    sending = false;
    await agents;
  });

  await t.test('Prometheus scrapes the aggregator and loads the rendered rules', async (t) => {
    const targets = await eventually('the aggregator scraped', 30, async () => {
      const data = await prometheus.api<{ activeTargets: { labels: Record<string, string>; health: string; scrapeUrl: string; lastError: string }[] }>('/api/v1/targets');
      return data.activeTargets.find((a) => a.health === 'up');
    });
    t.equal(targets.scrapeUrl, `http://${local.address}/metrics`, 'this test\'s aggregator');
    t.same({ job: targets.labels.job, namespace: targets.labels.namespace }, { job: JOB, namespace: NAMESPACE });
    const groups = (await prometheus.api<{ groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] }>('/api/v1/rules')).groups;
    t.same(groups.map((g) => g.name), ['nodeprep']);
    const loaded = groups[0]!.rules;
    t.same(loaded.map((r) => r.name), [...alertsByName().keys()], 'every alert of the chart');
    await eventually('every rule evaluated', 30, async () => {
      const rules = (await prometheus.api<{ groups: { rules: { name: string; health: string; lastError?: string }[] }[] }>('/api/v1/rules')).groups[0]!.rules;
      return rules.every((r) => r.health === 'ok') ? rules : undefined;
    }).then(
      () => t.pass('every rule evaluates without error'),
      async (err: Error) => t.fail(`${err.message}: ${JSON.stringify((await prometheus.api<{ groups: unknown[] }>('/api/v1/rules')).groups)}`),
    );
  });

  await t.test('the duplicate machine ID makes NodeprepMachineIdDuplicate go pending', async (t) => {
    const alert = await eventually('NodeprepMachineIdDuplicate pending', 60, async () => (await prometheus.alerts()).find((a) => a.labels.alertname === 'NodeprepMachineIdDuplicate'));
    t.equal(alert.state, 'pending', 'pending: its for is 15 minutes');
    t.same(alert.labels, { alertname: 'NodeprepMachineIdDuplicate', severity: 'critical', namespace: NAMESPACE, job: JOB });
    t.equal(alert.annotations.description, `1 group(s) of nodes share one machine ID (aggregator ${NAMESPACE}/${JOB}): they were cloned from one image. C-VEN and Kubelink tell nodes apart by it; GET /v1/nodes?code=MACHINE_ID_DUPLICATE lists them.`);
    t.equal(alert.annotations.runbook_url, 'https://github.com/nodeprep/nodeprep/blob/main/docs/runbooks/NodeprepMachineIdDuplicate.md');
    const refused = await eventually('NodeprepReportsRefused pending', 60, async () => (await prometheus.alerts()).find((a) => a.labels.alertname === 'NodeprepReportsRefused'));
    t.same(refused.labels, { alertname: 'NodeprepReportsRefused', severity: 'warning', namespace: NAMESPACE, job: JOB, reason: 'unauthorized' }, 'the wrong token: NodeprepReportsRefused, reason unauthorized');
    const active = (await prometheus.alerts()).map((a) => a.labels.alertname);
    t.notOk(active.includes('NodeprepAggregatorDown'), 'the aggregator is up: not down');
    t.notOk(active.includes('NodeprepCriticalFinding'), 'the duplicate pages once, as NodeprepMachineIdDuplicate');
  });

  await t.test('the dashboard: its variables resolve, every query evaluates, the core panels have data', async (t) => {
    const board = dashboard();
    // The variables, as Grafana's label_values() asks Prometheus for them.
    const namespaces = await prometheus.api<string[]>(`/api/v1/label/namespace/values?match[]=${encodeURIComponent('nodeprep_ready')}`);
    t.same(namespaces, [NAMESPACE], 'namespace: label_values(nodeprep_ready, namespace)');
    const jobs = await prometheus.api<string[]>(`/api/v1/label/job/values?match[]=${encodeURIComponent(`nodeprep_ready{namespace="${NAMESPACE}"}`)}`);
    t.same(jobs, [JOB], 'job: label_values(nodeprep_ready{namespace="$namespace"}, job)');
    const variableQueries = board.templating.list.filter((v) => v.type === 'query').map((v) => v.query);
    t.same(variableQueries, ['label_values(nodeprep_ready, namespace)', 'label_values(nodeprep_ready{namespace="$namespace"}, job)'], 'the dashboard asks exactly these');

    // A few scrapes of the reports first, so that rates over $__rate_interval have two samples.
    await new Promise((r) => setTimeout(r, 6000));
    const end = Date.now() / 1000;
    const step = 1;
    const vars = { namespace: NAMESPACE, job: JOB, __rate_interval: rateInterval(step, SCRAPE_SECONDS) };
    const panels = board.panels.filter((p) => p.type !== 'row');
    t.same(panels.filter((p) => CORE_PANELS.includes(p.title)).map((p) => p.title).sort(), [...CORE_PANELS].sort(), 'the core panels are on the dashboard');
    for (const panel of panels) {
      for (const target of panel.targets ?? []) {
        const expr = substitute(target.expr, vars);
        const what = `${panel.title} / ${target.refId}: ${expr}`;
        let series: unknown[];
        try {
          series = target.instant ? await prometheus.query(expr) : await prometheus.queryRange(expr, started, end, step);
          t.pass(`evaluates: ${what}`);
        } catch (err) {
          t.fail(`evaluates: ${what}: ${(err as Error).message}`);
          continue;
        }
        if (CORE_PANELS.includes(panel.title) && !NO_DATA_WITHOUT_CLUSTER_VIEW.test(expr)) t.ok(series.length > 0, `returns data: ${what}`);
      }
    }
  });
}
