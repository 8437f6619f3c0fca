// Calico's setting read from the real Kubernetes API server as the kubelet and Felix would read it
// (aggregator/detect/calico-env.ts): the built aggregator as a process, with the chart's own RBAC,
// watches a calico-node DaemonSet whose FELIX_CHAININSERTMODE is defined twice, then taken from an
// optional ConfigMap key that does not exist, then from envFrom with a prefix; CALICO_CONFIG_NOT_APPEND
// follows each, naming the place that decides. calico-env.test.ts has the decisions in a table.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { Finding } from '../../protocol/findings.js';
import type { FindingList } from '../../protocol/api.js';
import { AggregatorProcess } from '../support/aggregator-process.js';
import { eventually } from '../support/cluster.js';
import { AGENT_BIN, HOST_FIXTURES, IPTABLES_FIXTURES } from '../support/fixtures.js';
import { render } from '../support/helm.js';
import { ApiServer, requireKube, type KubeObject } from '../support/kube-apiserver.js';

const NODES = ['worker-1', 'worker-2'];

function calicoNode(container: Record<string, unknown>): KubeObject {
  return {
    apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'calico-node', namespace: 'kube-system' },
    spec: {
      selector: { matchLabels: { 'k8s-app': 'calico-node' } },
      template: { metadata: { labels: { 'k8s-app': 'calico-node' } }, spec: { containers: [{ name: 'calico-node', image: 'calico/node:v3.30.0', ...container }] } },
    },
  };
}

async function run(): Promise<void> {
  t.setTimeout(180_000);
  const api = await ApiServer.start();
  t.teardown(() => api.stop());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-calico-env-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await api.installCrds('felixconfigurations', 'installations');
  await api.ensureNamespace('nodeprep');
  const rendered = render({ release: 'nodeprep', namespace: 'nodeprep' });
  for (const o of rendered.filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'ServiceAccount'].includes(o.kind) && /aggregator|viewer/.test(o.metadata.name))) await api.create(o as KubeObject);
  await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'reader', namespace: 'nodeprep' } });
  await api.create({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'nodeprep-reader' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'nodeprep-viewer' },
    subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: 'nodeprep' }],
  });
  for (const name of NODES) await api.create({ apiVersion: 'v1', kind: 'Node', metadata: { name } });
  // Calico's ConfigMap (the chart lets the aggregator read it by name) and FelixConfiguration.
  await api.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'calico-config', namespace: 'kube-system' }, data: { veth_mtu: '1440' } });
  await api.create({ apiVersion: 'crd.projectcalico.org/v1', kind: 'FelixConfiguration', metadata: { name: 'default' }, spec: { chainInsertMode: 'Insert' } });

  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'calico-env-token\n');
  const aggregator = await AggregatorProcess.start(
    {
      KUBECONFIG: api.kubeconfigFor(await api.serviceAccountToken('nodeprep', 'nodeprep-aggregator'), 'aggregator'), HOME: dir, CLUSTER_VIEW: 'auto',
      // One report, sent with a shared token; no NODE_NO_AGENT nor NODE_STALE while the test runs.
      AUTH_TOKEN_FILE: tokenFile, NODE_NO_AGENT_GRACE_SECONDS: '3600', NODE_TTL_SECONDS: '3600',
    },
    { readToken: await api.serviceAccountToken('nodeprep', 'reader') },
  );
  t.teardown(() => aggregator.stop('SIGKILL'));

  const calico = async () => (await aggregator.get<FindingList>('/v1/findings?code=CALICO_CONFIG_NOT_APPEND')).body.findings;
  const settle = (what: string, ok: (findings: Finding[]) => boolean) =>
    eventually(what, 30, async () => {
      const now = await calico();
      return ok(now) ? now : undefined;
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}; CALICO_CONFIG_NOT_APPEND now: ${JSON.stringify(await calico())}`);
    });
  const placeIs = (place: string, where?: RegExp) => (findings: Finding[]) => findings.length === 1 && findings[0]!.evidence.place === place && (!where || where.test(String(findings[0]!.evidence.where)));
  // One node reports Calico's jumps first: its CALICO_INSERT_MODE names the place that decides,
  // which shows the configured mode even where it is unknown (no CALICO_CONFIG_NOT_APPEND then).
  const made = spawnSync(process.execPath, [AGENT_BIN, 'collect', '--node-name', 'worker-1', '--host-root', path.join(HOST_FIXTURES, 'unique'), '--from-dump', `ipv4/nft=${path.join(IPTABLES_FIXTURES, 'calico-insert.v4.nft.txt')}`], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`agent collect: ${made.stderr}`);
  const sent = await aggregator.post('/v1/reports', made.stdout, 'calico-env-token');
  if (sent.status !== 202) throw new Error(`report: ${sent.status} ${JSON.stringify(sent.body)}`);
  const insertMode = async () => (await aggregator.get<FindingList>('/v1/findings?code=CALICO_INSERT_MODE')).body.findings[0];

  // The start: FelixConfiguration default says Insert, and calico-node does not exist yet.
  await settle('FelixConfiguration decides', (f) => placeIs('felix:default')(f) && f[0]!.nodes.length === NODES.length);

  await t.test('the variable defined twice: the container gets the last one', async (t) => {
    await api.must('PATCH', '/apis/crd.projectcalico.org/v1/felixconfigurations/default', { spec: { chainInsertMode: 'Append' } }, { contentType: 'application/merge-patch+json' });
    await settle('Append everywhere', (f) => f.length === 0);
    await api.create(calicoNode({ env: [{ name: 'FELIX_CHAININSERTMODE', value: 'Append' }, { name: 'FELIX_CHAININSERTMODE', value: 'Insert' }] }));
    const [f] = await settle('the last entry, Insert, decides', placeIs('env:kube-system/calico-node'));
    t.match(f!.evidence.where, /^FELIX_CHAININSERTMODE=Insert, on DaemonSet kube-system\/calico-node \(container calico-node\)$/);
    t.match(f!.remediation, /kubectl -n kube-system set env daemonset\/calico-node -c calico-node FELIX_CHAININSERTMODE=Append/);
  });

  await t.test('an optional ConfigMap key that does not exist: unset, FelixConfiguration decides, and says so', async (t) => {
    await api.must('PUT', '/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node', calicoNode({
      env: [{ name: 'FELIX_CHAININSERTMODE', valueFrom: { configMapKeyRef: { name: 'calico-config', key: 'chain_insert_mode', optional: true } } }],
    }));
    await settle('FelixConfiguration default (Append) decides: no finding', (f) => f.length === 0);
    await api.must('PATCH', '/apis/crd.projectcalico.org/v1/felixconfigurations/default', { spec: { chainInsertMode: 'Insert' } }, { contentType: 'application/merge-patch+json' });
    const [f] = await settle('FelixConfiguration default (Insert) decides', placeIs('felix:default'));
    t.match(f!.evidence.where, /^FelixConfiguration default \(spec\.chainInsertMode: Insert\), as FELIX_CHAININSERTMODE on DaemonSet kube-system\/calico-node does not decide \(FELIX_CHAININSERTMODE is taken from the optional key chain_insert_mode of ConfigMap kube-system\/calico-config, which does not exist, so the kubelet does not set it\)$/);
    // The key appears: now the variable decides.
    await api.must('PATCH', '/api/v1/namespaces/kube-system/configmaps/calico-config', { data: { chain_insert_mode: 'Insert' } }, { contentType: 'application/merge-patch+json' });
    const [byKey] = await settle('the key decides', placeIs('env:kube-system/calico-node'));
    t.match(byKey!.remediation, /patch configmap calico-config --type merge -p '\{"data":\{"chain_insert_mode":"Append"\}\}' && kubectl -n kube-system rollout restart daemonset\/calico-node/);
  });

  await t.test('envFrom a ConfigMap with a prefix; env wins over it', async (t) => {
    await api.must('PATCH', '/apis/crd.projectcalico.org/v1/felixconfigurations/default', { spec: { chainInsertMode: 'Append' } }, { contentType: 'application/merge-patch+json' });
    await api.must('PATCH', '/api/v1/namespaces/kube-system/configmaps/calico-config', { data: { CHAININSERTMODE: 'Insert' } }, { contentType: 'application/merge-patch+json' });
    await api.must('PUT', '/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node', calicoNode({ envFrom: [{ prefix: 'FELIX_', configMapRef: { name: 'calico-config' } }] }));
    const [f] = await settle('envFrom decides, over FelixConfiguration\'s Append', placeIs('env:kube-system/calico-node', /envFrom/));
    t.match(f!.evidence.where, /^FELIX_CHAININSERTMODE from envFrom ConfigMap kube-system\/calico-config \(prefix FELIX_\), key CHAININSERTMODE, on DaemonSet/);
    t.match(f!.remediation, /"CHAININSERTMODE":"Append"/);
    await api.must('PUT', '/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node', calicoNode({
      envFrom: [{ prefix: 'FELIX_', configMapRef: { name: 'calico-config' } }],
      env: [{ name: 'FELIX_CHAININSERTMODE', value: 'Append' }],
    }));
    await settle('env decides: Append, no finding', (f) => f.length === 0);
    t.pass('resolved');
  });

  await t.test('an empty value: Felix ignores it, so FelixConfiguration decides, and the finding says so', async (t) => {
    // FelixConfiguration default says Append (the test before): with the variable ignored, no finding.
    await api.must('PUT', '/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node', calicoNode({ env: [{ name: 'FELIX_CHAININSERTMODE', value: '' }] }));
    const stored = await api.must<KubeObject & { spec: { template: { spec: { containers: { env: Record<string, unknown>[] }[] } } } }>('GET', '/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node');
    // The API server drops an empty value: the kubelet then sets the variable to "" all the same.
    t.same(stored.spec.template.spec.containers[0]!.env, [{ name: 'FELIX_CHAININSERTMODE' }], 'stored without its value');
    await settle('FelixConfiguration default (Append) decides: no finding', (f) => f.length === 0);
    await api.must('PATCH', '/apis/crd.projectcalico.org/v1/felixconfigurations/default', { spec: { chainInsertMode: 'Insert' } }, { contentType: 'application/merge-patch+json' });
    const [f] = await settle('FelixConfiguration default (Insert) decides', placeIs('felix:default'));
    t.equal(f!.evidence.where, 'FelixConfiguration default (spec.chainInsertMode: Insert), as FELIX_CHAININSERTMODE on DaemonSet kube-system/calico-node does not decide (FELIX_CHAININSERTMODE= is empty, which Felix ignores as if it were not set)');
    t.match(f!.remediation, /patch felixconfiguration default/);
  });

  await t.test('envFrom a Secret: nodeprep does not read it, and says what to check', async (t) => {
    await api.must('PATCH', '/apis/crd.projectcalico.org/v1/felixconfigurations/default', { spec: { chainInsertMode: 'Insert' } }, { contentType: 'application/merge-patch+json' });
    await api.must('PUT', '/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node', calicoNode({ envFrom: [{ secretRef: { name: 'calico-env' } }] }));
    // The mode is unknown: FelixConfiguration's Insert does not decide, so no CALICO_CONFIG_NOT_APPEND;
    // the node's own Insert rules name the Secret and what to check.
    const named = await eventually('the node\'s finding names the Secret', 30, async () => {
      const f = await insertMode();
      return f && /Secret kube-system\/calico-env/.test(f.remediation) ? f : undefined;
    });
    t.match(named.remediation, /may be set by envFrom Secret kube-system\/calico-env, which nodeprep does not read: it reads no Secrets/);
    t.match(named.remediation, /kubectl -n kube-system get secret calico-env -o go-template=.*\(its keys, no values\)/);
    t.same(await calico(), [], 'FelixConfiguration\'s Insert does not decide while the Secret may');
  });
}

const why = requireKube();
if (why) t.plan(0, why);
else await run();
