// The cluster view against the real Kubernetes API server: the built aggregator as a process,
// with a kubeconfig of a ServiceAccount bound to the chart's own rendered RBAC (a permission the
// chart forgot fails this test), Nodes created with their status, and reports from the built
// agent. Each finding of the view appears and resolves as the objects change, each alert is
// logged once; the API server restarts and RBAC goes away without spurious alerts or a crash.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import type { Finding } from '../../protocol/findings.js';
import type { FindingList, NodeList } from '../../protocol/api.js';
import { appSpecificMachineId } from '../../protocol/machine-id.js';
import { AggregatorProcess } from '../support/aggregator-process.js';
import { eventually } from '../support/cluster.js';
import { AGENT_BIN, HOST_FIXTURES, IPTABLES_FIXTURES } from '../support/fixtures.js';
import { logCaughtUp } from '../support/log-caught-up.js';
import { render, type K8sObject } from '../support/helm.js';
import { ApiServer, requireKube, type KubeObject } from '../support/kube-apiserver.js';

const machineIdOf = (host: string) => readFileSync(path.join(HOST_FIXTURES, host, 'etc/machine-id'), 'utf8').trim();
const key = (f: Pick<Finding, 'code' | 'nodes'>) => `${f.code} ${[...f.nodes].sort().join(',')}`;

function nodeObject(name: string, machineID: string, systemUUID: string, taints: { key: string; value?: string; effect: string }[] = []): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name } },
    spec: { taints },
    status: {
      nodeInfo: {
        machineID, systemUUID, bootID: 'b', kernelVersion: '6.1.0', osImage: 'Debian GNU/Linux 12', containerRuntimeVersion: 'containerd://1.7',
        kubeletVersion: 'v1.37.2', kubeProxyVersion: 'v1.37.2', operatingSystem: 'linux', architecture: 'amd64',
      },
    },
  };
}

/** Puts back the taints each Node was created with, without the not-ready one admission added. */
async function readyNodes(api: ApiServer, names: string[]): Promise<void> {
  for (const name of names) {
    const node = await api.must('GET', `/api/v1/nodes/${name}`);
    const taints = ((node.spec?.taints ?? []) as { key: string }[]).filter((t) => t.key !== 'node.kubernetes.io/not-ready');
    await api.must('PATCH', `/api/v1/nodes/${name}`, { spec: { taints } }, { contentType: 'application/merge-patch+json' });
  }
}

async function run(): Promise<void> {
  t.setTimeout(300_000);
  const api = await ApiServer.start();
  t.teardown(() => api.stop());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-view-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await api.installCrds('felixconfigurations', 'installations');
  await api.ensureNamespace('nodeprep');
  await api.ensureNamespace('illumio-system');

  // The chart's own objects for the aggregator's identity and RBAC, and the agent DaemonSet
  // (narrowed to tolerate nothing, so that a tainted node is left without an agent).
  const rendered = render({ release: 'nodeprep', namespace: 'nodeprep' });
  const rbac = rendered.filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'ServiceAccount'].includes(o.kind) && /aggregator|agent|viewer/.test(o.metadata.name));
  if (!rbac.some((o) => o.kind === 'ClusterRole' && o.metadata.name === 'nodeprep-aggregator')) throw new Error('the chart renders no ClusterRole nodeprep-aggregator');
  for (const o of rbac) await api.create(o as KubeObject);
  const daemonSet = rendered.find((o) => o.kind === 'DaemonSet') as K8sObject;
  daemonSet.spec.template.spec.tolerations = [];
  await api.create(daemonSet as KubeObject);
  const aggregatorToken = await api.serviceAccountToken('nodeprep', 'nodeprep-aggregator');
  const kubeconfig = api.kubeconfigFor(aggregatorToken, 'aggregator');
  // The test reads the API as a reader bound to the chart's viewer role, as an admin would.
  await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'reader', namespace: 'nodeprep' } });
  await api.create({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'nodeprep-reader' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'nodeprep-viewer' },
    subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: 'nodeprep' }],
  });
  const readToken = await api.serviceAccountToken('nodeprep', 'reader');

  // Nodes: worker-1 and worker-2 report; worker-3 is a clone of worker-2 without an agent;
  // worker-4 has a taint the agent does not tolerate; worker-5's agent pod cannot pull its image.
  const ids = { one: machineIdOf('unique'), two: machineIdOf('duplicate-a') };
  const uuid = { shared: '4c4c4544-0042-3510-8052-b4c04f4e4332', other: 'ec2a0d67-5b41-4f7e-8d36-2f0a6a1e9b11' };
  await api.create(nodeObject('worker-1', ids.one, uuid.shared));
  await api.create(nodeObject('worker-2', ids.two, uuid.shared));
  await api.create(nodeObject('worker-3', ids.two, uuid.other));
  await api.create(nodeObject('worker-4', '1f2e3d4c5b6a47988796a5b4c3d2e1f0', '0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d', [{ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' }]));
  await api.create(nodeObject('worker-5', '2e3d4c5b6a7f48a99807b6a5c4d3e2f1', '1c2d3e4f-5061-4b7c-9d8e-0f1a2b3c4d5e'));
  // Admission taints every new Node not-ready until its kubelet says otherwise; these are ready.
  await readyNodes(api, ['worker-1', 'worker-2', 'worker-3', 'worker-4', 'worker-5']);
  const pod = await api.create({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: 'nodeprep-agent-w5', namespace: 'nodeprep' },
    spec: { nodeName: 'worker-5', serviceAccountName: 'nodeprep-agent', containers: [{ name: 'agent', image: 'registry.invalid/nodeprep-agent:0.1.0' }] },
  });
  await api.patchStatus(`/api/v1/namespaces/nodeprep/pods/${pod.metadata.name}`, {
    phase: 'Pending',
    containerStatuses: [{ name: 'agent', ready: false, restartCount: 0, image: 'registry.invalid/nodeprep-agent:0.1.0', imageID: '', state: { waiting: { reason: 'ImagePullBackOff' } } }],
  });

  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'view-test-token\n');
  const env = {
    KUBECONFIG: kubeconfig, HOME: dir, CLUSTER_VIEW: 'auto', AUTH_TOKEN_FILE: tokenFile,
    AGENT_SERVICE_ACCOUNT: 'nodeprep/nodeprep-agent', NODE_TTL_SECONDS: '60', NODE_NO_AGENT_GRACE_SECONDS: '1', CALICO_DRIFT_GRACE_SECONDS: '2',
  };
  let aggregator = await AggregatorProcess.start(env, { readToken });
  t.teardown(() => aggregator.stop('SIGKILL'));

  const report = (node: string, host: string, dump: string) => {
    const made = spawnSync(process.execPath, [AGENT_BIN, 'collect', '--node-name', node, '--host-root', path.join(HOST_FIXTURES, host), '--from-dump', `ipv4/nft=${path.join(IPTABLES_FIXTURES, `${dump}.txt`)}`], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`agent collect: ${made.stderr}`);
    return made.stdout;
  };
  const reports = { 'worker-1': report('worker-1', 'unique', 'calico-append.v4.nft'), 'worker-2': report('worker-2', 'duplicate-a', 'calico-insert.v4.nft') };
  const send = async () => {
    for (const [node, body] of Object.entries(reports)) {
      const res = await aggregator.post('/v1/reports', body, 'view-test-token');
      if (res.status !== 202) throw new Error(`${node}: ${res.status} ${JSON.stringify(res.body)}`);
    }
  };
  // The agents' heartbeat, as long as the test runs.
  const heartbeat = setInterval(() => void send().catch(() => {}), 1000);
  t.teardown(() => clearInterval(heartbeat));
  await send().catch((err) => {
    throw new Error(`${(err as Error).message}; the aggregator said: ${aggregator.lines.slice(-10).join('\n')} ${aggregator.child.exitCode}`);
  });

  const findings = async () => (await aggregator.get<FindingList>('/v1/findings')).body.findings;
  const keys = async () => (await findings()).map(key).sort();
  const settle = (what: string, want: string[], seconds = 30) =>
    eventually(what, seconds, async () => {
      const now = await keys();
      return JSON.stringify(now) === JSON.stringify([...want].sort()) ? now : undefined;
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}; findings now: ${JSON.stringify(await keys())}`);
    });
  const raisedOnce = async (t: Test, f: Finding) => t.equal((await aggregator.alertsFor('finding raised', f.id)).length, 1, `one "finding raised" for ${key(f)}`);

  const initial = [
    'MACHINE_ID_DUPLICATE worker-2,worker-3',
    'SYSTEM_UUID_DUPLICATE worker-1,worker-2',
    'NODE_NO_AGENT worker-3',
    'NODE_NO_AGENT worker-4',
    'NODE_NO_AGENT worker-5',
    'CALICO_INSERT_MODE worker-2',
    'CALICO_MODE_MIXED worker-2',
    // The guide's root CA step: no ConfigMap in this cluster (illumio-checks.test.ts has the rest).
    'ILLUMIO_ROOT_CA_MISSING ',
  ];

  await t.test('what the API adds to the reports', async (t) => {
    await settle('the initial findings', initial);
    const all = await findings();
    const duplicate = all.find((f) => f.code === 'MACHINE_ID_DUPLICATE')!;
    t.match(duplicate.evidence, { machineId: appSpecificMachineId(ids.two), nodeCount: 2, sources: { agent: 1, kubelet: 1 }, kubeletOnly: ['worker-3'] }, 'worker-3 counts by its kubelet\'s copy');
    const gpu = all.find((f) => f.code === 'NODE_NO_AGENT' && f.nodes[0] === 'worker-4')!;
    t.same(gpu.evidence.untoleratedTaints, ['dedicated=gpu:NoSchedule'], 'the taint the agent DaemonSet does not tolerate');
    t.equal(gpu.evidence.daemonSet, 'nodeprep/nodeprep-agent');
    const clone = all.find((f) => f.code === 'NODE_NO_AGENT' && f.nodes[0] === 'worker-3')!;
    t.match(clone.message, /no agent pod is scheduled/, 'no pod, no taint');
    const pulling = all.find((f) => f.code === 'NODE_NO_AGENT' && f.nodes[0] === 'worker-5')!;
    t.match(pulling.evidence.agentPod, { name: 'nodeprep/nodeprep-agent-w5', phase: 'Pending', reason: 'ImagePullBackOff' });
    t.match(pulling.message, /ImagePullBackOff/);
    for (const f of all) await raisedOnce(t, f);
    t.notOk(aggregator.lines.some((l) => l.includes(ids.one) || l.includes(ids.two)), 'no raw machine ID in any log line');

    const nodes = (await aggregator.get<NodeList>('/v1/nodes')).body.nodes;
    t.same(nodes.map((n) => [n.name, n.inApi, n.reporting, n.machineIdSource]), [
      ['worker-1', true, true, 'agent'], ['worker-2', true, true, 'agent'], ['worker-3', true, false, 'kubelet'], ['worker-4', true, false, 'kubelet'], ['worker-5', true, false, 'kubelet'],
    ]);
    const counts = (await aggregator.get<FindingList>('/v1/findings')).body.nodes;
    t.match(counts, { inApi: 5, inApiReporting: 2, reporting: 2 }, 'reporting / total');
    const metrics = (await aggregator.get<string>('/metrics')).body;
    t.match(metrics, /nodeprep_cluster_nodes\{state="total"\} 5/);
    t.match(metrics, /nodeprep_cluster_nodes\{state="reporting"\} 2/);
    t.match(metrics, /nodeprep_cluster_view_state\{state="synced"\} 1/);
    t.match((await aggregator.get<{ clusterView: { state: string } }>('/readyz')).body.clusterView, { state: 'synced' });
    t.ok(aggregator.logged().some((l) => l.msg === 'aggregator ready' && /^on \(KUBECONFIG/.test(String(l.clusterView))), 'the start log says the cluster view is on');
  });

  await t.test('the kubelet keeps an old machine ID: raised; restarted: resolved', async (t) => {
    await api.patchStatus('/api/v1/nodes/worker-1', { nodeInfo: { machineID: '7a6b5c4d3e2f40a1b2c3d4e5f6a7b8c9' } });
    await settle('KUBELET_MACHINE_ID_STALE', [...initial, 'KUBELET_MACHINE_ID_STALE worker-1']);
    const stale = (await findings()).find((f) => f.code === 'KUBELET_MACHINE_ID_STALE')!;
    t.match(stale.remediation, /systemctl restart kubelet/);
    await api.patchStatus('/api/v1/nodes/worker-1', { nodeInfo: { machineID: ids.one } });
    await settle('resolved', initial);
    t.equal((await aggregator.alertsFor('finding resolved', stale.id)).length, 1, 'resolved once');
  });

  await t.test('Calico\'s configuration: Insert by FelixConfiguration, then Append, then an env var on calico-node', async (t) => {
    const felix = (mode: string) => ({ apiVersion: 'crd.projectcalico.org/v1', kind: 'FelixConfiguration', metadata: { name: 'default' }, spec: { chainInsertMode: mode } });
    await api.create(felix('Insert'));
    // worker-1's rules are appended although the configuration says Insert: drift, after the grace.
    await settle('configured Insert', [...initial, 'CALICO_CONFIG_NOT_APPEND worker-1,worker-2,worker-3,worker-4,worker-5', 'CALICO_CONFIG_DRIFT worker-1']);
    const notAppend = (await findings()).find((f) => f.code === 'CALICO_CONFIG_NOT_APPEND')!;
    t.match(notAppend.evidence, { place: 'felix:default', nodeCount: 5 });
    t.match(notAppend.remediation, /calicoctl patch felixconfiguration default/, 'a manifest install: calicoctl, the place that decides');
    t.equal(notAppend.severity, 'warning', 'no Illumio yet');
    const insertMode = (await findings()).find((f) => f.code === 'CALICO_INSERT_MODE')!;
    t.match(insertMode.remediation, /FelixConfiguration default/, 'the node\'s own finding names the place too');

    await api.must('PATCH', '/apis/crd.projectcalico.org/v1/felixconfigurations/default', { spec: { chainInsertMode: 'Append' } }, { contentType: 'application/merge-patch+json' });
    await settle('configured Append: worker-2 still inserts', [...initial, 'CALICO_CONFIG_DRIFT worker-2']);
    t.equal((await aggregator.alertsFor('finding resolved', notAppend.id)).length, 1);

    // A manifest-installed calico-node with the variable: it wins over FelixConfiguration.
    const calicoNode = {
      apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'calico-node', namespace: 'kube-system' },
      spec: {
        selector: { matchLabels: { 'k8s-app': 'calico-node' } },
        template: {
          metadata: { labels: { 'k8s-app': 'calico-node' } },
          spec: { containers: [{ name: 'calico-node', image: 'calico/node:v3.30.0', env: [{ name: 'FELIX_CHAININSERTMODE', value: 'Insert' }] }] },
        },
      },
    };
    await api.create(calicoNode);
    await settle('the variable decides', [...initial, 'CALICO_CONFIG_NOT_APPEND worker-1,worker-2,worker-3,worker-4,worker-5', 'CALICO_CONFIG_DRIFT worker-1']);
    const byEnv = (await findings()).find((f) => f.code === 'CALICO_CONFIG_NOT_APPEND')!;
    t.match(byEnv.evidence, { place: 'env:kube-system/calico-node' });
    t.match(byEnv.remediation, /kubectl -n kube-system set env daemonset\/calico-node -c calico-node FELIX_CHAININSERTMODE=Append/);
    calicoNode.spec.template.spec.containers[0]!.env = [];
    await api.must('PUT', '/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node', calicoNode);
    await settle('the variable removed: FelixConfiguration says Append again', [...initial, 'CALICO_CONFIG_DRIFT worker-2']);
  });

  await t.test('a Node deleted: its report and findings go at once, each resolved once', async (t) => {
    const before = await findings();
    const resolvedBefore = aggregator.alerts('finding resolved').length;
    await api.must('DELETE', '/api/v1/nodes/worker-2');
    delete (reports as Record<string, string>)['worker-2']; // its agent is gone with it
    // worker-3 no longer shares its ID with anyone; the UUID group and the modes break up too.
    await settle('after the deletion', ['NODE_NO_AGENT worker-3', 'NODE_NO_AGENT worker-4', 'NODE_NO_AGENT worker-5', 'ILLUMIO_ROOT_CA_MISSING ']);
    const gone = before.filter((f) => f.nodes.includes('worker-2'));
    await logCaughtUp(() => gone.every((f) => aggregator.alerts('finding resolved').slice(resolvedBefore).some((a) => a.id === f.id)));
    const resolved = aggregator.alerts('finding resolved').slice(resolvedBefore);
    for (const f of gone) t.equal(resolved.filter((a) => a.id === f.id).length, 1, `${key(f)} resolved once`);
    t.ok(resolved.some((a) => a.reason === 'node deleted'), 'with the reason');
    t.equal((await aggregator.get('/v1/nodes/worker-2')).status, 404, 'forgotten');
    t.notOk((await findings()).some((f) => f.code === 'NODE_STALE'), 'not stale: gone');
  });

  await t.test('the API server restarts: the informers recover, nothing is raised or resolved', async (t) => {
    const steady = await keys();
    const alertLines = () => aggregator.alerts('finding raised').length + aggregator.alerts('finding resolved').length;
    const before = alertLines();
    await api.stopApiServer();
    await eventually('the view notices', 40, async () => aggregator.logged().some((l) => l.msg === 'cluster view: watch lost; retrying'));
    await new Promise((r) => setTimeout(r, 1500));
    await api.startApiServer();
    await eventually('the watches are back', 60, async () => (await aggregator.get<{ clusterView: { state: string } }>('/readyz')).body.clusterView.state === 'synced');
    // A change after the restart is seen: the informers watch again.
    await api.create(nodeObject('worker-6', '3f4e5d6c7b8a49b0a9b8c7d6e5f4a3b2', '2d3e4f50-6172-4c8d-ae9f-1a2b3c4d5e6f'));
    await readyNodes(api, ['worker-6']);
    await settle('worker-6 appears', [...steady, 'NODE_NO_AGENT worker-6']);
    t.equal(alertLines(), before + 1, 'only worker-6\'s alert: nothing spurious across the restart');
    t.match((await aggregator.get<string>('/metrics')).body, /nodeprep_cluster_view_errors_total\{resource="nodes",state="unreachable"\} [1-9]/);
  });

  await t.test('RBAC removed: a clear error and a metric, reports still taken; restored: back', async (t) => {
    // A freshly restarted API server may answer Forbidden for a moment before its RBAC cache has
    // loaded (the restart above): only the lines from here on are this subtest's.
    const forbidden = () => aggregator.logged().filter((l) => l.msg === 'cluster view: watch forbidden; check the aggregator\'s RBAC' && l.resource === 'nodes').length;
    const forbiddenBefore = forbidden();
    await api.must('DELETE', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/nodeprep-aggregator');
    // Existing watches outlive the binding; a restart makes every informer ask again.
    await api.stopApiServer();
    await api.startApiServer();
    await eventually('forbidden is logged', 60, async () => forbidden() > forbiddenBefore);
    t.match((await aggregator.get<string>('/metrics')).body, /nodeprep_cluster_view_resource_up\{resource="nodes"\} 0/);
    t.match((await aggregator.get<{ clusterView: { state: string } }>('/readyz')).body.clusterView, { state: 'degraded' });
    t.equal((await aggregator.post('/v1/reports', reports['worker-1'], 'view-test-token')).status, 202, 'reports are still taken');
    t.equal(aggregator.child.exitCode, null, 'no crash');
    // The cluster view's binding, the one deleted above (the chart also binds the publish role).
    const binding = rbac.find((o) => o.kind === 'ClusterRoleBinding' && o.metadata.name === 'nodeprep-aggregator')!;
    await api.create(binding as KubeObject);
    await eventually('the watches are back', 90, async () => (await aggregator.get<{ clusterView: { state: string } }>('/readyz')).body.clusterView.state === 'synced');
    t.equal(forbidden() - forbiddenBefore, 1, 'logged once, not per retry');
  });

  await t.test('the aggregator restarted: the whole view is back from the API at once', async (t) => {
    const before = await keys();
    await aggregator.stop('SIGKILL');
    aggregator = await AggregatorProcess.start(env, { readToken });
    await settle('the same findings', before);
    t.pass('whole again');
  });
}

const why = requireKube();
if (why) t.plan(0, why);
else await run();
