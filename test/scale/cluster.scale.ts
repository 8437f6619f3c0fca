// Scale and soak (issue 15): a simulated cluster of 5,000 nodes (the real control plane, kwok for
// the kubelets), the chart installed with helm (its agent DaemonSet Running on every node it
// tolerates), the built aggregator as a process with the chart's own ServiceAccount and RBAC, and a
// load generator playing every agent with a token bound to that agent's pod, at a compressed
// heartbeat, for ten minutes, through faults: the aggregator killed, the API server restarted,
// 500 nodes deleted, a token used for another node. It checks that exactly the expected findings
// are active, that nothing was raised or resolved spuriously, that no report was lost, and how
// many TokenReviews it cost; and it prints the figures, each compared in the printout with its
// target where there is one: the outlets' (issue 21: report writes at steady state, the report's
// size, Events written and dropped across the faults) and what the cluster view's watches cost
// the API server (issue 20, item 5: watch requests a minute of a steady view, lists after the API
// server restart).
//
//   npm run test:scale                      (SCALE_NODES=1000 SCALE_SOAK_SECONDS=120 for a short run)
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { FindingList, NodeList } from '../../protocol/api.js';
import type { Finding } from '../../protocol/findings.js';
import { appSpecificMachineId } from '../../protocol/machine-id.js';
import { AggregatorProcess } from '../support/aggregator-process.js';
import { eventually } from '../support/cluster.js';
import { chartDir, helmAsync } from '../support/helm.js';
import { logCaughtUp } from '../support/log-caught-up.js';
import { SimCluster, fakeNode, requireSimCluster } from '../support/kube-cluster.js';
import { buildReport } from '../support/reports.js';
import { LoadGenerator, percentile, processUsage, type Agent, type LoadFigures } from './load.js';

const N = Number(process.env.SCALE_NODES ?? 5000);
const SOAK_S = Number(process.env.SCALE_SOAK_SECONDS ?? 600);
const HEARTBEAT_S = 6; // the agents' 60 s, compressed tenfold
const TTL_S = 5 * HEARTBEAT_S;
// The grace before NODE_NO_AGENT is not compressed below what the first reports need: each of
// the 4,990 agents' first reports waits for its TokenReview, and those run at the API server's
// real speed, 8 at once: 14 to 20 s after a start on a 2-CPU machine that also runs the control
// plane, kwok and this generator, and 30 s was once too short. In a cluster the grace is the TTL,
// 300 s, five times this.
const NO_AGENT_GRACE_S = 60;
const DUPLICATE_PAIRS = 10;
const TAINTED = 10;
const DELETED = Math.floor(N / 10);
const TAINT = { key: 'nodeprep.test/no-agent', value: 'true', effect: 'NoSchedule' };

const name = (i: number) => `node-${String(i).padStart(5, '0')}`;
const hex = (seed: string) => createHash('md5').update(seed).digest('hex');
// Pairs of clones: node 100+2k+1 has the machine ID of node 100+2k.
const isCloneOf = (i: number) => (i >= 100 && i < 100 + 2 * DUPLICATE_PAIRS && i % 2 === 1 ? i - 1 : undefined);
const machineIdOf = (i: number) => hex(`machine-${isCloneOf(i) ?? i}`);
const tainted = (i: number) => i >= 200 && i < 200 + TAINTED;
// Nodes whose facts change during the soak, and the nodes deleted: apart from the ones above.
const CHANGING = [30, 31];
const deleted = (i: number) => i >= N - DELETED;

const expectedSteady = (alive: (i: number) => boolean) => {
  const keys: string[] = [];
  for (let k = 0; k < DUPLICATE_PAIRS; k++) {
    const a = 100 + 2 * k;
    if (alive(a) && alive(a + 1)) keys.push(`MACHINE_ID_DUPLICATE ${name(a)},${name(a + 1)}`);
  }
  for (let i = 200; i < 200 + TAINTED; i++) if (alive(i)) keys.push(`NODE_NO_AGENT ${name(i)}`);
  // No Illumio installed in this cluster: the guide's root CA step says so, once for the cluster.
  keys.push('ILLUMIO_ROOT_CA_MISSING ');
  return keys.sort();
};
// How long after an aggregator's start every agent's first report was in: the margin under the grace.
const heardFigure = (f: LoadFigures, started: number) =>
  f.allHeardAt === undefined
    ? `not yet (${f.heard.size} agents heard)`
    : `${((f.allHeardAt - started) / 1000).toFixed(1)} s after its start, ${f.heard.size} agents (NODE_NO_AGENT's grace: ${NO_AGENT_GRACE_S} s)`;
const key = (f: Pick<Finding, 'code' | 'nodes'>) => `${f.code} ${[...f.nodes].sort().join(',')}`;

async function run(): Promise<void> {
  t.setTimeout((SOAK_S + 1800) * 1000);
  const began = Date.now();
  const figures: Record<string, string> = {};
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-scale-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  // ---- the cluster ----
  const sim = await SimCluster.start();
  t.teardown(() => sim.stop());
  const { api } = sim;
  let at = Date.now();
  await sim.createAll(Array.from({ length: N }, (_, i) => fakeNode(name(i), { machineID: machineIdOf(i), systemUUID: randomUUID() }, tainted(i) ? [TAINT] : [])), 32);
  figures['nodes created'] = `${N} in ${((Date.now() - at) / 1000).toFixed(1)} s`;

  await api.ensureNamespace('nodeprep', { 'pod-security.kubernetes.io/enforce': 'privileged' });
  at = Date.now();
  const install = await helmAsync(['install', 'nodeprep', chartDir, '-n', 'nodeprep',
    // The agent tolerates the control plane's taint only: the tainted nodes get no agent.
    '--set-json', 'agent.tolerations=[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists","effect":"NoSchedule"}]',
    '--set', 'aggregator.tls.enabled=false'], api.adminKubeconfig);
  if (install.status !== 0) throw new Error(`helm install: ${install.stderr}`);
  const daemonSet = async () => (await api.must('GET', '/apis/apps/v1/namespaces/nodeprep/daemonsets/nodeprep-agent')).status as { desiredNumberScheduled?: number; numberAvailable?: number };
  await eventually('the agent DaemonSet Running on every tolerated node', 900, async () => {
    const s = await daemonSet();
    return s.desiredNumberScheduled === N - TAINTED && s.numberAvailable === N - TAINTED;
  }).catch(async (err: Error) => {
    // Why not, for the next reader of a CI log: how far it got, and what the components said last.
    const logs = sim.api.recentLogs().split('\n').slice(-80).join('\n');
    throw new Error(`${err.message}; DaemonSet status ${JSON.stringify(await daemonSet().catch(() => ({})))}; components exited: ${JSON.stringify(sim.api.exited())}\n${logs}`);
  });
  figures['agent pods Running after helm install'] = `${N - TAINTED} in ${((Date.now() - at) / 1000).toFixed(1)} s`;
  // The OpenReports CRD, as Kyverno would have installed it: the report object is written.
  await api.installCrds('openreports.io_clusterreports');

  // ---- the aggregator, as the chart's ServiceAccount ----
  const kubeconfig = api.kubeconfigFor(await api.serviceAccountToken('nodeprep', 'nodeprep-aggregator', { expirationSeconds: 24 * 3600 }), 'aggregator');
  await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'reader', namespace: 'nodeprep' } });
  await api.create({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'scale-reader' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'nodeprep-viewer' },
    subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: 'nodeprep' }],
  });
  const readToken = await api.serviceAccountToken('nodeprep', 'reader', { expirationSeconds: 24 * 3600 });
  const env = {
    KUBECONFIG: kubeconfig, HOME: dir, AGENT_SERVICE_ACCOUNT: 'nodeprep/nodeprep-agent', NODE_TTL_SECONDS: String(TTL_S),
    // A node without a report within the grace has no agent: the first reports of thousands of
    // agents (each a TokenReview) must all be in before anything is said.
    NODE_NO_AGENT_GRACE_SECONDS: String(NO_AGENT_GRACE_S), CALICO_DRIFT_GRACE_SECONDS: '60',
    // The outlets as the chart configures them (its aggregator ConfigMap).
    AGGREGATOR_DEPLOYMENT: 'nodeprep/nodeprep-aggregator', VALUES_CONFIGMAP: 'nodeprep/nodeprep-illumio-values',
  };

  // The baseline for the cluster view's memory: the same aggregator, view off, no reports.
  const off = await AggregatorProcess.start({ HOME: dir, CLUSTER_VIEW: 'off' });
  await new Promise((r) => setTimeout(r, 3000));
  const rssOff = processUsage(off.child.pid!).rssMiB;
  await off.stop();

  // ---- the agents: one token per agent pod, bound to it ----
  const pods = (await api.must<{ items: { metadata: { name: string; uid: string }; spec: { nodeName: string } }[] }>('GET', '/api/v1/namespaces/nodeprep/pods?fieldSelector=spec.serviceAccountName%3Dnodeprep-agent')).items;
  // (No assertion on the root test before the subtests: tap would end it there.)
  if (pods.length !== N - TAINTED) throw new Error(`${pods.length} agent pods, expected one per tolerated node (${N - TAINTED})`);
  const index = new Map(Array.from({ length: N }, (_, i) => [name(i), i]));
  const agents: Agent[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < pods.length) {
      const pod = pods[next++]!;
      const token = await api.serviceAccountToken('nodeprep', 'nodeprep-agent', { audiences: ['nodeprep'], expirationSeconds: 3600, boundPod: { name: pod.metadata.name, uid: pod.metadata.uid } });
      const i = index.get(pod.spec.nodeName)!;
      agents.push({ node: pod.spec.nodeName, token, body: reportOf(i, 'append') });
    }
  }));
  const agentOf = new Map(agents.map((a) => [a.node, a]));

  // What the cluster view alone costs, and how long it takes to be whole: an aggregator with the
  // view, no reports and nothing published, stopped before the one the agents report to.
  const counts = async (of: AggregatorProcess) => (await of.get<FindingList>('/v1/findings?limit=1')).body.nodes;
  const viewWhole = async (of: AggregatorProcess) => (await counts(of)).inApi === N && (await of.get<{ clusterView: { state: string } }>('/readyz')).body.clusterView.state === 'synced';
  at = Date.now();
  const viewOnly = await AggregatorProcess.start({ ...env, VALUES_CONFIGMAP: '', PUBLISH_REPORT: 'off', PUBLISH_EVENTS: 'off' }, { readToken, startSeconds: 60 });
  t.teardown(() => viewOnly.stop('SIGKILL'));
  await eventually('the cluster view whole', 300, async () => viewWhole(viewOnly));
  figures['aggregator start to a complete view'] = `${((Date.now() - at) / 1000).toFixed(1)} s (${N} Nodes listed and watched)`;
  await new Promise((r) => setTimeout(r, 2000));
  const rssViewOnly = processUsage(viewOnly.child.pid!).rssMiB;
  figures['memory the cluster view costs'] = `${(rssViewOnly - rssOff).toFixed(1)} MiB for ${N} nodes, ${(((rssViewOnly - rssOff) * 1024 * 1024) / N).toFixed(0)} bytes a node (RSS ${rssViewOnly.toFixed(1)} MiB with the view, ${rssOff.toFixed(1)} MiB without)`;
  await viewOnly.stop();

  // The aggregator the agents report to. In a cluster the agents are running when it starts, and
  // NODE_NO_AGENT's grace counts from its start: so the agents here send from its first moment.
  const firstStarted = Date.now();
  let aggregator = await AggregatorProcess.start(env, { readToken, startSeconds: 60 });
  t.teardown(() => aggregator.stop('SIGKILL'));
  const load = new LoadGenerator(aggregator.base, HEARTBEAT_S * 1000);
  t.teardown(() => load.close());
  load.add(agents);
  load.start();
  await eventually('the cluster view whole', 300, async () => viewWhole(aggregator));

  // What the aggregator asked of the API server (nodeprep_kube_api_requests_total), of one kind or all.
  const kubeRequests = async (kind?: string) => {
    const text = (await aggregator.get<string>('/metrics')).body;
    let total = 0;
    for (const m of text.matchAll(/^nodeprep_kube_api_requests_total\{kind="([^"]+)"\} (\d+)$/gm)) if (kind === undefined || m[1] === kind) total += Number(m[2]);
    return total;
  };
  // The watch requests of a steady view (every informer listed and watching, no fault): counted in
  // windows, the first aggregator's life after its view was whole and the restarted one's after
  // the API server restart, so that neither the first watches nor the faults count.
  const resources = Object.keys((await aggregator.get<{ clusterView: { resources: Record<string, string> } }>('/readyz')).body.clusterView.resources).length;
  const steadyWatches = { minutes: 0, watches: 0 };
  let steadyFrom = { at: Date.now(), watches: await kubeRequests('watch') };
  const steadyUntil = async () => {
    steadyWatches.minutes += (Date.now() - steadyFrom.at) / 60_000;
    steadyWatches.watches += (await kubeRequests('watch')) - steadyFrom.watches;
  };


  const findings = async () => (await aggregator.get<FindingList>('/v1/findings?limit=5000')).body.findings;
  const settle = async (what: string, want: string[], seconds: number) =>
    eventually(what, seconds, async () => {
      const now = (await findings()).map(key).sort();
      return JSON.stringify(now) === JSON.stringify(want) ? now : undefined;
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}; findings now: ${JSON.stringify((await findings()).map(key).sort().slice(0, 40))}`);
    });
  const soakStart = Date.now();
  const soakAt = (s: number) => new Promise((r) => setTimeout(r, Math.max(0, soakStart + s * 1000 - Date.now())));
  let alive = (i: number) => i >= 0;

  await t.test('steady: exactly the duplicate pairs and the untolerated nodes', async (t) => {
    await settle('the steady findings', expectedSteady(alive), NO_AGENT_GRACE_S + 120);
    figures['first aggregator: every agent heard'] = heardFigure(load.figures, firstStarted);
    const all = await findings();
    for (const f of all.filter((f) => f.code === 'NODE_NO_AGENT')) t.same(f.evidence.untoleratedTaints, ['nodeprep.test/no-agent=true:NoSchedule'], `${f.nodes[0]}: the taint in the evidence`);
    for (const f of all.filter((f) => f.code === 'MACHINE_ID_DUPLICATE')) t.match(f.evidence, { nodeCount: 2, sources: { agent: 2, kubelet: 0 } });
  });

  await t.test('facts change on two nodes: raised, then resolved, each once', async (t) => {
    await soakAt(Math.min(60, SOAK_S * 0.1));
    const before = await kubeRequests();
    const minuteStart = Date.now();
    for (const i of CHANGING) load.change(name(i), reportOf(i, 'insert'));
    const changed = [...expectedSteady(alive), `CALICO_INSERT_MODE ${name(30)}`, `CALICO_INSERT_MODE ${name(31)}`, `CALICO_MODE_MIXED ${name(30)},${name(31)}`].sort();
    await settle('Insert on two nodes', changed, 3 * HEARTBEAT_S);
    for (const i of CHANGING) load.change(name(i), reportOf(i, 'append'));
    await settle('back to Append', expectedSteady(alive), 3 * HEARTBEAT_S);
    const count = (msg: 'finding raised' | 'finding resolved', code: string) => aggregator.alerts(msg).filter((a) => a.code === code).length;
    await logCaughtUp(() => count('finding resolved', 'CALICO_INSERT_MODE') >= 2 && count('finding resolved', 'CALICO_MODE_MIXED') >= 1, 10);
    for (const code of ['CALICO_INSERT_MODE', 'CALICO_MODE_MIXED']) {
      t.equal(count('finding raised', code), code === 'CALICO_MODE_MIXED' ? 1 : 2, `${code} raised once per subject`);
      t.equal(count('finding resolved', code), code === 'CALICO_MODE_MIXED' ? 1 : 2, `${code} resolved once per subject`);
    }
    await new Promise((r) => setTimeout(r, Math.max(0, 60_000 - (Date.now() - minuteStart))));
    const perMinute = (await kubeRequests()) - before;
    figures['API requests at steady state'] = `${perMinute} a minute, ${(perMinute / N).toFixed(4)} per node per minute (TokenReviews of rotated or expiring tokens included)`;
  });

  await t.test('every alert line once, nothing stale, for the first aggregator', async (t) => {
    const raised = aggregator.alerts('finding raised');
    const ids = raised.map((a) => a.id);
    t.equal(new Set(ids).size, ids.length, 'no finding raised twice');
    const resolved = aggregator.alerts('finding resolved').map((a) => `${String(a.code)} ${JSON.stringify(a.nodes)}`);
    t.equal(resolved.length, 3, `and resolved only what the changed facts resolved: ${JSON.stringify(resolved.slice(0, 10))}`);
    t.notOk(raised.some((a) => a.code === 'NODE_STALE'), 'no node went stale');
  });

  let figuresBeforeKill = load.figures;
  let publishBeforeKill: PublishCounts | undefined;
  let restartedAt = Date.now();
  await t.test('the aggregator killed and restarted: the same findings back, NODE_NO_AGENT after its grace', async (t) => {
    await soakAt(SOAK_S * 0.3);
    const steady = (await findings()).map(key).sort();
    publishBeforeKill = await publishCounts(aggregator);
    await steadyUntil();
    await aggregator.stop('SIGKILL');
    figuresBeforeKill = load.resetFigures();
    const restarted = Date.now();
    aggregator = await AggregatorProcess.start(env, { readToken, startSeconds: 60 });
    // The generator keeps its connection pool: a new aggregator on another port is a new target.
    load.retarget(aggregator.base);
    await settle('the same findings', steady, NO_AGENT_GRACE_S + 120);
    restartedAt = restarted;
    figures['aggregator restart to all findings back'] = `${((Date.now() - restarted) / 1000).toFixed(1)} s (heartbeat ${HEARTBEAT_S} s; NODE_NO_AGENT waits its grace of ${NO_AGENT_GRACE_S} s from the start)`;
    figures['restarted aggregator: every agent heard'] = heardFigure(load.figures, restarted);
    t.pass('whole again');
  });

  await t.test('the API server restarted: the informers recover, no alert', async (t) => {
    await soakAt(SOAK_S * 0.45);
    const before = aggregator.alerts('finding raised').length + aggregator.alerts('finding resolved').length;
    // An informer lists again only when the server has forgotten its version (410), and says so.
    const relists = () => aggregator.logged().filter((l) => l.msg === 'cluster view: the watch\'s version expired; listing again').map((l) => String(l.resource));
    const relistsBefore = relists().length;
    const listsBefore = await kubeRequests('list');
    await api.stopApiServer();
    await new Promise((r) => setTimeout(r, 5000));
    await api.startApiServer();
    await eventually('the view synced again', 300, async () => (await aggregator.get<{ clusterView: { state: string } }>('/readyz')).body.clusterView.state === 'synced');
    await new Promise((r) => setTimeout(r, 3 * HEARTBEAT_S * 1000));
    const relisted = relists().slice(relistsBefore);
    figures['relists after the API server restart'] =
      `${relisted.length} of ${resources} informers listed again (${relisted.join(', ') || 'none'}), ${(await kubeRequests('list')) - listsBefore} list requests ` +
      `(pages of 500, the Illumio checks' pod counts included); target: no list while the version is valid (the only API server, restarted, ` +
      `has forgotten versions older than its start: at most one list per informer, ${resources})${relisted.length > resources ? ' MISSED' : ''}`;
    steadyFrom = { at: Date.now(), watches: await kubeRequests('watch') };
    t.equal(aggregator.alerts('finding raised').length + aggregator.alerts('finding resolved').length, before, 'nothing raised or resolved');
    t.same((await findings()).map(key).sort(), expectedSteady(alive));
  });

  await t.test(`${DELETED} nodes deleted: their reports and findings go at once, none goes stale`, async (t) => {
    await soakAt(SOAK_S * 0.6);
    const doomed = Array.from({ length: DELETED }, (_, k) => N - DELETED + k);
    for (const i of doomed) load.remove(name(i));
    let nextDelete = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (nextDelete < doomed.length) await api.must('DELETE', `/api/v1/nodes/${name(doomed[nextDelete++]!)}`);
    }));
    alive = (i: number) => !deleted(i);
    await eventually('forgotten', 60, async () => (await counts(aggregator)).known === N - DELETED);
    const nodes = (await aggregator.get<NodeList>(`/v1/nodes?limit=5000`)).body;
    t.notOk(nodes.nodes.some((n) => deleted(index.get(n.name)!)), 'no deleted node is listed');
    await new Promise((r) => setTimeout(r, (TTL_S + 2 * HEARTBEAT_S) * 1000));
    t.notOk(aggregator.alerts('finding raised').some((a) => a.code === 'NODE_STALE'), 'none went stale, past the TTL');
    t.same((await findings()).map(key).sort(), expectedSteady(alive));
  });

  await t.test('the outlets at steady state: report writes in a quiet minute, the report\'s size', async (t) => {
    const before = await publishCounts(aggregator);
    await new Promise((r) => setTimeout(r, 60_000));
    const after = await publishCounts(aggregator);
    figures['report writes at steady state'] = `${after.reportApplied - before.reportApplied} in a minute of heartbeats with nothing changing (target 0)`;
    const report = await api.must<{ results: unknown[]; summary: Record<string, number> }>('GET', '/apis/openreports.io/v1alpha1/clusterreports/nodeprep');
    figures['report object'] = `${(Buffer.byteLength(JSON.stringify(report)) / 1024).toFixed(1)} KiB as the API server returns it, ${report.results.length} results (${JSON.stringify(report.summary)}); ${(after.reportBytes / 1024).toFixed(1)} KiB applied`;
    t.ok(report.results.length >= 4, 'the report is there, with the four steps at least');
  });

  await t.test('a token used for another node: refused and counted', async (t) => {
    const victim = agentOf.get(name(0))!;
    const thief = agentOf.get(name(1))!;
    t.equal(await load.deliver(victim, { token: thief.token }), 403, 'node-0000\'s report with node-0001\'s token');
    t.match((await aggregator.get<string>('/metrics')).body, /nodeprep_reports_rejected_total\{reason="forbidden_node"\} 1\b/);
  });

  await t.test('nothing lost, TokenReviews cached, every alert once', async (t) => {
    await soakAt(SOAK_S);
    await steadyUntil();
    const perResourcePer5 = steadyWatches.watches / resources / (steadyWatches.minutes / 5);
    figures['watch requests, steady view'] =
      `${steadyWatches.watches} in ${steadyWatches.minutes.toFixed(1)} min for ${resources} resources: ${(steadyWatches.watches / steadyWatches.minutes).toFixed(2)} a minute, ` +
      `${perResourcePer5.toFixed(2)} per resource per 5 min (target: at most 1, ${perResourcePer5 <= 1 ? 'met' : 'MISSED'}; each watch asks for 5 to 10 min)`;
    await load.stop();
    const metrics = (await aggregator.get<string>('/metrics')).body;
    const received = Number(/^nodeprep_reports_received_total (\d+)$/m.exec(metrics)?.[1]);
    const sent = load.figures;
    t.equal(received, sent.delivered, `every report the generator had accepted was counted by the aggregator (${received})`);
    t.same([...sent.refused.entries()], [[403, 1]], 'no report refused but the stolen token\'s');
    const reviews = Number(/^nodeprep_kube_reviews_total\{kind="tokenreview",answer="asked"\} (\d+)$/m.exec(metrics)?.[1]);
    const lifetimeS = (Date.now() - soakStart) / 1000 - SOAK_S * 0.3;
    const bound = (N - TAINTED) * (Math.ceil(lifetimeS / 300) + 1) + 100;
    t.ok(reviews <= bound, `TokenReviews ${reviews} at most one per token per cache lifetime (${bound})`);
    const publish = addCounts(publishBeforeKill, await publishCounts(aggregator));
    figures['Events across the faults'] = `${publish.eventsCreated} created, ${publish.eventsPatched} counted again in their series, ${publish.eventsDropped} dropped (${JSON.stringify(publish.droppedBy)}); report applied ${publish.reportApplied} times, ${publish.reportFailed} failed`;
    figures.TokenReviews = `${reviews} for ${N - TAINTED} agent tokens over ${lifetimeS.toFixed(0)} s (cache 300 s), plus the test's readers`;
    const raised = aggregator.alerts('finding raised').map((a) => a.id);
    t.equal(new Set(raised).size, raised.length, 'the restarted aggregator raised each finding once');
    t.notOk(aggregator.alerts('finding raised').some((a) => a.code === 'NODE_STALE'), 'no NODE_STALE');
    const all = [...figuresBeforeKill.latenciesMs, ...sent.latenciesMs];
    figures['ingest latency'] = `p50 ${percentile(all, 50).toFixed(1)} ms, p99 ${percentile(all, 99).toFixed(1)} ms over ${all.length} reports (${((figuresBeforeKill.delivered + sent.delivered) / SOAK_S).toFixed(0)} a second)`;
    // Each agent's first report after an aggregator starts waits for its token's review (about
    // 2% of the soak's reports, with the restart); from then on the reviews are refreshed in the
    // background. The steady figure leaves out the first two heartbeats after each start.
    const settled = (f: LoadFigures, since: number) => f.latenciesMs.filter((_, i) => f.sentAt[i]! >= since + 2 * HEARTBEAT_S * 1000);
    const steady = [...settled(figuresBeforeKill, soakStart), ...settled(sent, restartedAt)];
    figures['ingest latency, steady'] = `p50 ${percentile(steady, 50).toFixed(1)} ms, p99 ${percentile(steady, 99).toFixed(1)} ms over ${steady.length} reports (the first ${2 * HEARTBEAT_S} s after each aggregator start left out)`;
    const heap = (name: string) => Number(new RegExp(`^nodeprep_aggregator_nodejs_${name} (\\d+)`, 'm').exec(metrics)?.[1]) / 1048576;
    figures['aggregator heap'] = `${heap('heap_size_used_bytes').toFixed(1)} MiB used of ${heap('heap_size_total_bytes').toFixed(1)} MiB, external ${heap('external_memory_bytes').toFixed(1)} MiB`;
    const usage = processUsage(aggregator.child.pid!);
    figures['aggregator RSS and CPU'] = `${usage.rssMiB.toFixed(1)} MiB at the end; CPU ${((usage.cpuSeconds / ((Date.now() - restartedAt) / 1000)) * 100).toFixed(0)}% of a core since its restart`;
  });

  figures['scale run'] = `${((Date.now() - began) / 60_000).toFixed(1)} min in all`;
  const width = Math.max(...Object.keys(figures).map((k) => k.length));
  const table = Object.entries(figures).map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
  process.stdout.write(`\n# scale figures (${N} nodes, heartbeat ${HEARTBEAT_S} s, soak ${SOAK_S} s)\n${table}\n`);
  writeFileSync(path.join(os.tmpdir(), 'nodeprep-scale-figures.txt'), table + '\n');
}

interface PublishCounts {
  reportApplied: number;
  reportFailed: number;
  reportBytes: number;
  eventsCreated: number;
  eventsPatched: number;
  eventsDropped: number;
  droppedBy: Record<string, number>;
}

/** The outlets' counters (aggregator/publish/) of one aggregator process. */
async function publishCounts(aggregator: AggregatorProcess): Promise<PublishCounts> {
  const text = (await aggregator.get<string>('/metrics')).body;
  const one = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
  const droppedBy: Record<string, number> = {};
  for (const m of text.matchAll(/^nodeprep_events_dropped_total\{reason="([^"]+)"\} (\d+)$/gm)) if (Number(m[2]) > 0) droppedBy[m[1]!] = Number(m[2]);
  return {
    reportApplied: one(/^nodeprep_report_writes_total\{result="applied"\} (\d+)$/m),
    reportFailed: one(/^nodeprep_report_writes_total\{result="failed"\} (\d+)$/m),
    reportBytes: one(/^nodeprep_report_bytes (\d+)$/m),
    eventsCreated: one(/^nodeprep_events_written_total\{action="create"\} (\d+)$/m),
    eventsPatched: one(/^nodeprep_events_written_total\{action="patch"\} (\d+)$/m),
    eventsDropped: Object.values(droppedBy).reduce((a, b) => a + b, 0),
    droppedBy,
  };
}

/** Two processes' counters as one (the aggregator is killed and restarted during the soak). */
function addCounts(a: PublishCounts | undefined, b: PublishCounts): PublishCounts {
  if (!a) return b;
  const droppedBy = { ...a.droppedBy };
  for (const [k, v] of Object.entries(b.droppedBy)) droppedBy[k] = (droppedBy[k] ?? 0) + v;
  return {
    reportApplied: a.reportApplied + b.reportApplied, reportFailed: a.reportFailed + b.reportFailed, reportBytes: b.reportBytes,
    eventsCreated: a.eventsCreated + b.eventsCreated, eventsPatched: a.eventsPatched + b.eventsPatched, eventsDropped: a.eventsDropped + b.eventsDropped, droppedBy,
  };
}

/** A healthy node's report, as its agent would send it, with collectedAt left to the sender. */
function reportOf(i: number, calico: 'append' | 'insert'): string {
  const report = buildReport({ name: name(i), machineId: appSpecificMachineId(machineIdOf(i))!, calico });
  return JSON.stringify({ ...report, collectedAt: '@@COLLECTED_AT@@' });
}

const why = requireSimCluster();
if (why) t.plan(0, why);
else await run();
