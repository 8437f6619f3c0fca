// The report object against the real Kubernetes API server with the upstream CRDs, written by the
// aggregator as the chart's ServiceAccount: nothing while neither kind is served (logged once),
// the OpenReports CRD installed after the start picked up without a restart, the right Nodes,
// resolved findings gone, no write while nothing changes (heartbeats), changes coalesced, the
// report put back after a delete and after someone else's edit, written after an API server
// restart, and the older wgpolicyk8s.io kind where only that is served.
import t from 'tap';
import type { ReportObject, ReportResult } from '../../aggregator/publish/report-object.js';
import { eventually } from '../support/cluster.js';
import { IDS, agentReport as report, kubectl, startAggregator, startCluster } from '../support/publish-harness.js';
import { requireKube } from '../support/kube-apiserver.js';

const OPENREPORTS = '/apis/openreports.io/v1alpha1/clusterreports/nodeprep';
const WGPOLICY = '/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/nodeprep';

const results = (o: ReportObject, rule: string) => o.results.filter((r) => r.rule === rule);
const nodesOf = (r: ReportResult | undefined) => (r?.resources ?? []).map((x) => x.name).sort();

async function run(): Promise<void> {
  t.setTimeout(300_000);
  const api = await startCluster(t);

  const agg = await startAggregator(api);
  t.teardown(() => agg.close());
  const reports = { w1: report('worker-1', IDS.one, 'append'), w2: report('worker-2', IDS.two, 'insert') };
  await agg.send(reports.w1);
  await agg.send(reports.w2);
  const writes = () => agg.metric(/^nodeprep_report_writes_total\{result="applied"\} (\d+)$/m);
  const get = async (path: string) => api.request<ReportObject & { metadata: { resourceVersion: string } }>('GET', path);
  const logged = (msg: RegExp) => agg.lines.filter((l) => msg.test(String(l.msg)));

  await t.test('neither kind served: nothing written, said once', async (t) => {
    await eventually('the log line', 10, async () => logged(/^report: neither/).length > 0);
    await new Promise((r) => setTimeout(r, 3500)); // three more discovery rounds
    t.equal(logged(/^report: neither/).length, 1, 'once, not per round');
    t.equal(await writes(), 0);
    t.equal(await agg.metric(/^nodeprep_report_api_info\{api="none"\} (\d+)$/m), 1);
  });

  await t.test('the CRD installed after the start: the report appears without a restart, with the right Nodes', async (t) => {
    const installedAt = Date.now();
    await api.installCrds('openreports.io_clusterreports');
    const object = await eventually('the ClusterReport', 30, async () => {
      const res = await get(OPENREPORTS);
      return res.status === 200 && res.body.results.some((r) => r.rule === 'MACHINE_ID_DUPLICATE') ? res.body : undefined;
    });
    t.ok(Date.now() - installedAt < 10_000, `written ${Date.now() - installedAt} ms after the CRD (discovery every second here, 30 s by default)`);
    t.match(object, { kind: 'ClusterReport', source: 'nodeprep', metadata: { labels: { 'app.kubernetes.io/managed-by': 'nodeprep-aggregator' } } });
    const managers = (object.metadata as { managedFields?: { manager: string; operation: string }[] }).managedFields ?? [];
    t.same(managers.map((m) => `${m.manager} ${m.operation}`), ['nodeprep Apply'], 'server-side apply, by its own field manager only');
    t.same(nodesOf(results(object, 'MACHINE_ID_DUPLICATE')[0]), ['worker-2', 'worker-3'], 'the clone by its kubelet\'s copy');
    t.same(nodesOf(results(object, 'CALICO_INSERT_MODE')[0]), ['worker-2']);
    t.same(nodesOf(results(object, 'NODE_NO_AGENT')[0]), ['worker-3']);
    t.match(results(object, 'MACHINE_ID_DUPLICATE')[0], { result: 'fail', severity: 'critical', policy: 'machine-ids', properties: { nodeCount: '2' } });
    t.same(object.results.filter((r) => r.rule === 'readiness').map((r) => r.policy), ['machine-ids', 'root-ca', 'sizing', 'calico-append']);
    const readiness = (await agg.app.inject({ url: '/v1/readiness', headers: { authorization: `Bearer ${agg.readToken}` } })).json() as { steps: { step: string; reason: string }[] };
    t.same(object.results.filter((r) => r.rule === 'readiness').map((r) => r.message), readiness.steps.map((s) => s.reason), 'the steps say what GET /v1/readiness says');
    const counted = { pass: 0, fail: 0, warn: 0, error: 0, skip: 0 };
    for (const r of object.results) counted[r.result]++;
    t.same(object.summary, counted);
    t.equal(await agg.metric(/^nodeprep_report_api_info\{api="openreports.io\/v1alpha1"\} (\d+)$/m), 1);
    t.ok(logged(/^report: writing ClusterReport nodeprep/).length === 1, 'said once');

    // What an admin types.
    const list = await kubectl(api, ['get', 'clusterreports']);
    t.equal(list.status, 0, list.stderr);
    t.match(list.stdout, /NAME\s+PASS\s+FAIL\s+WARN\s+ERROR\s+SKIP\s+AGE/);
    t.match(list.stdout, new RegExp(`nodeprep\\s+${object.summary.pass}\\s+${object.summary.fail}\\s+${object.summary.warn}\\s+${object.summary.error}\\s+${object.summary.skip}\\s`));
    t.equal((await kubectl(api, ['get', 'creps', 'nodeprep', '-o', 'name'])).stdout.trim(), 'clusterreport.openreports.io/nodeprep', 'by its short name');
    const described = await kubectl(api, ['describe', 'clusterreport', 'nodeprep']);
    t.match(described.stdout, /Rule:\s+MACHINE_ID_DUPLICATE/);
    t.match(described.stdout, /Name:\s+worker-3/);
  });

  await t.test('heartbeats and an unchanged cluster: no write, the same object', async (t) => {
    const before = await writes();
    const rv = (await get(OPENREPORTS)).body.metadata.resourceVersion;
    for (let i = 0; i < 12; i++) {
      await agg.send(reports.w1);
      await agg.send(reports.w2);
      await new Promise((r) => setTimeout(r, 250));
    }
    // Three resyncs (a read each) have passed too.
    t.equal(await writes(), before, 'no write');
    t.equal((await get(OPENREPORTS)).body.metadata.resourceVersion, rv, 'the object untouched');
  });

  await t.test('a finding resolved: gone from the report; changes in a burst are coalesced', async (t) => {
    const before = await writes();
    // Five changes in a burst: Insert, Append, Insert, Append, Append.
    for (const mode of ['append', 'insert', 'append', 'insert', 'append'] as const) {
      await agg.send(report('worker-2', IDS.two, mode));
      await new Promise((r) => setTimeout(r, 40));
    }
    const object = await eventually('CALICO_INSERT_MODE gone', 20, async () => {
      const o = (await get(OPENREPORTS)).body;
      return results(o, 'CALICO_INSERT_MODE').length === 0 ? o : undefined;
    });
    t.same(nodesOf(results(object, 'MACHINE_ID_DUPLICATE')[0]), ['worker-2', 'worker-3'], 'the rest stays');
    await new Promise((r) => setTimeout(r, 1000));
    const made = (await writes()) - before;
    t.ok(made >= 1 && made <= 3, `${made} write(s) for ten transitions within 200 ms (at most one per 300 ms here, 5 s by default)`);
  });

  await t.test('deleted by someone: written again', async (t) => {
    await api.must('DELETE', OPENREPORTS);
    const back = await eventually('the report back', 20, async () => ((await get(OPENREPORTS)).status === 200 ? true : undefined));
    t.ok(back);
    t.same(nodesOf(results((await get(OPENREPORTS)).body, 'MACHINE_ID_DUPLICATE')[0]), ['worker-2', 'worker-3']);
  });

  await t.test('edited by someone else (another field manager): ours again', async (t) => {
    const ours = (await get(OPENREPORTS)).body;
    await api.must('PATCH', `${OPENREPORTS}?fieldManager=someone-else&force=true`, { apiVersion: 'openreports.io/v1alpha1', kind: 'ClusterReport', metadata: { name: 'nodeprep' }, summary: { pass: 99 }, results: [] }, { contentType: 'application/apply-patch+yaml' });
    t.equal((await get(OPENREPORTS)).body.results?.length ?? 0, 0, 'their edit is in');
    const restored = await eventually('ours again', 20, async () => {
      const o = (await get(OPENREPORTS)).body;
      return o.results?.length === ours.results.length && o.summary.pass === ours.summary.pass ? o : undefined;
    });
    t.same(restored.results, ours.results);
  });

  await t.test('the API server restarts: a change made meanwhile is written when it is back', async (t) => {
    await api.stopApiServer();
    await agg.send(report('worker-2', IDS.two, 'insert'));
    await new Promise((r) => setTimeout(r, 1500));
    await api.startApiServer();
    const object = await eventually('the change written', 60, async () => {
      const res = await get(OPENREPORTS);
      return res.status === 200 && results(res.body, 'CALICO_INSERT_MODE').length === 1 ? res.body : undefined;
    });
    t.same(nodesOf(results(object, 'CALICO_INSERT_MODE')[0]), ['worker-2']);
    t.ok(logged(/^report not written; retrying$/).length >= 1, 'the failure was said');
    t.ok(logged(/^report written again$/).length >= 1, 'and the recovery');
  });

  await t.test('only wgpolicyk8s.io served: the ClusterPolicyReport', async (t) => {
    await api.must('DELETE', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterreports.openreports.io');
    await eventually('the ClusterReport kind gone', 30, async () => (await api.request('GET', '/apis/openreports.io/v1alpha1')).status === 404);
    await api.installCrds('wgpolicyk8s.io_clusterpolicyreports');
    const object = await eventually('the ClusterPolicyReport', 30, async () => {
      const res = await get(WGPOLICY);
      return res.status === 200 ? res.body : undefined;
    });
    t.equal(object.kind, 'ClusterPolicyReport');
    t.same(nodesOf(results(object, 'MACHINE_ID_DUPLICATE')[0]), ['worker-2', 'worker-3']);
    t.same(nodesOf(results(object, 'CALICO_INSERT_MODE')[0]), ['worker-2']);
    t.equal(await agg.metric(/^nodeprep_report_api_info\{api="wgpolicyk8s.io\/v1alpha2"\} (\d+)$/m), 1);
    // Nothing the server prunes or normalises in the older kind makes each read-back a write.
    const settled = await writes();
    const rv = (await get(WGPOLICY)).body.metadata.resourceVersion;
    await new Promise((r) => setTimeout(r, 3500)); // three read-backs
    t.equal(await writes(), settled, 'unchanged: no write');
    t.equal((await get(WGPOLICY)).body.metadata.resourceVersion, rv, 'the object untouched');
    const list = await kubectl(api, ['get', 'clusterpolicyreports']);
    t.match(list.stdout, /nodeprep\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s/);

    // OpenReports installed later again: the newer kind wins, and the old object is named.
    await api.installCrds('openreports.io_clusterreports');
    await eventually('the ClusterReport again', 30, async () => ((await get(OPENREPORTS)).status === 200 ? true : undefined));
    t.equal(logged(/no longer updated \(kubectl delete clusterpolicyreport nodeprep\)/).length, 1, 'says which object to delete');
  });
}

const why = requireKube();
if (why) t.plan(0, why);
else await run();
