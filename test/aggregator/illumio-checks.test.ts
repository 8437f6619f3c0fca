// The guide's other two steps and the readiness answer, with the aggregator as a process against
// the real Kubernetes API server: the root CA ConfigMap created and changed while it runs, a real
// TLS "PCE" on loopback (its certificate made by openssl), pods counted for the sizing, C-VEN's
// DaemonSet deployed too small and then right, and the cluster going from not ready to ready.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import { parse } from 'yaml';
import type { FindingList } from '../../protocol/api.js';
import type { IllumioSizing, Readiness } from '../../protocol/illumio.js';
import { makePki } from '../illumio/fixtures/pki.js';
import { AggregatorProcess } from '../support/aggregator-process.js';
import { eventually } from '../support/cluster.js';
import { AGENT_BIN, IPTABLES_FIXTURES } from '../support/fixtures.js';
import { render } from '../support/helm.js';
import { ApiServer, requireKube, type KubeObject } from '../support/kube-apiserver.js';
import { testCa } from '../support/tls.js';

const NODES: Record<string, string> = {
  'node-a': '1a2b3c4d5e6f40718293a4b5c6d7e8f1',
  'node-b': '2b3c4d5e6f7041829304b5c6d7e8f9a2',
  'node-c': '3c4d5e6f708142939405c6d7e8f9a0b3',
};

async function run(): Promise<void> {
  t.setTimeout(240_000);
  const api = await ApiServer.start();
  t.teardown(() => api.stop());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-illumio-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await api.ensureNamespace('nodeprep');
  await api.ensureNamespace('illumio-system');
  const rendered = render({ release: 'nodeprep', namespace: 'nodeprep' });
  for (const o of rendered.filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'ServiceAccount'].includes(o.kind))) await api.create(o as KubeObject);
  await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'reader', namespace: 'nodeprep' } });
  await api.create({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'nodeprep-reader' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'nodeprep-viewer' },
    subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: 'nodeprep' }],
  });

  // Three nodes, and their workloads: five pods that count, and three that do not (two on the
  // host network, one finished).
  for (const [name, machineID] of Object.entries(NODES)) {
    await api.create({ apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { nodeInfo: { machineID, systemUUID: `${machineID.slice(0, 8)}-0000-4000-8000-000000000000`, bootID: '', kernelVersion: '', osImage: '', containerRuntimeVersion: '', kubeletVersion: '', kubeProxyVersion: '', operatingSystem: 'linux', architecture: 'amd64' } } });
  }
  await api.ensureNamespace('shop');
  const pod = (name: string, hostNetwork = false) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop' }, spec: { nodeName: 'node-a', hostNetwork, containers: [{ name: 'c', image: 'registry.invalid/shop' }] } });
  for (let i = 0; i < 5; i++) await api.create(pod(`web-${i}`));
  for (let i = 0; i < 2; i++) await api.create(pod(`agent-${i}`, true));
  await api.create(pod('batch-done'));
  await api.patchStatus('/api/v1/namespaces/shop/pods/batch-done', { phase: 'Succeeded' });

  // The PCE: a TLS server on loopback whose certificate a private CA signed.
  const privateCa = testCa(t);
  const otherCa = testCa(t);
  const leaf = privateCa.server('DNS:localhost');
  const pce = await pceServer(leaf.cert.toString(), leaf.key.toString());
  t.teardown(() => pce.close());

  writeFileSync(path.join(dir, 'tokens'), 'agents-token\n');
  const env = {
    KUBECONFIG: api.kubeconfigFor(await api.serviceAccountToken('nodeprep', 'nodeprep-aggregator'), 'aggregator'), HOME: dir,
    AUTH_TOKEN_FILE: path.join(dir, 'tokens'), PCE_URL: `localhost:${pce.port}`, POLICY_SIZE: '1Gi', ILLUMIO_CHECK_INTERVAL_SECONDS: '1', NODE_NO_AGENT_GRACE_SECONDS: '1',
  };
  const aggregator = await AggregatorProcess.start(env, { readToken: await api.serviceAccountToken('nodeprep', 'reader') });
  t.teardown(() => aggregator.stop('SIGKILL'));
  const findings = async () => (await aggregator.get<FindingList>('/v1/findings')).body.findings;
  const codes = async () => [...new Set((await findings()).map((f) => f.code))].sort();
  const readiness = async () => (await aggregator.get<Readiness>('/v1/readiness')).body;
  const step = async (name: string) => (await readiness()).steps.find((s) => s.step === name)!;
  const until = (what: string, check: () => Promise<boolean>) =>
    eventually(what, 30, async () => (await check()) || undefined).catch(async (err: Error) => {
      throw new Error(`${err.message}; findings: ${JSON.stringify(await codes())}; readiness: ${JSON.stringify((await readiness()).steps.map((s) => [s.step, s.state, s.reason]))}`);
    });
  const rootCa = (caFile: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'root-ca-config', namespace: 'illumio-system' }, data: { 'root-ca.crt': readFileSync(caFile, 'utf8') } });

  await t.test('nothing prepared: every step says what is missing', async (t) => {
    await until('the first answer', async () => (await codes()).includes('ILLUMIO_ROOT_CA_MISSING') && (await codes()).includes('NODE_NO_AGENT'));
    const answer = await readiness();
    t.equal(answer.ready, false);
    t.same(answer.steps.map((s) => s.step), ['machine-ids', 'root-ca', 'sizing', 'calico-append'], 'the guide\'s order');
    t.equal((await step('root-ca')).state, 'not-ready');
    t.match((await step('root-ca')).reason, /no root CA ConfigMap/);
    t.not((await step('machine-ids')).state, 'ready', 'no node reports yet');
    t.same(answer.nodes, { reporting: 0, inCluster: 3 });
    const missing = (await findings()).find((f) => f.code === 'ILLUMIO_ROOT_CA_MISSING')!;
    t.equal(missing.severity, 'warning', 'the PCE\'s certificate is not publicly trusted: the ConfigMap is needed');
    t.match(missing.remediation, /kubectl -n illumio-system create configmap root-ca-config --from-file=root-ca\.crt/);
  });

  await t.test('the sizing: nodes from the API, workloads counted, policy size configured', async (t) => {
    const sizing = (await aggregator.get<IllumioSizing>('/v1/illumio/sizing')).body;
    t.match(sizing.inputs.nodes, { value: 3, source: 'Node objects in the API', tier: 'small' });
    t.match(sizing.inputs.workloads, { value: 5, source: /pods counted/, tier: 'small' }, 'not hostNetwork, not finished');
    t.match(sizing.inputs.policyBytes, { value: 1024 ** 3, source: 'configured (POLICY_SIZE)', tier: 'large' });
    t.equal(sizing.tier, 'large', 'the highest wins');
    t.same(sizing.decidedBy, ['policyBytes']);
    const yaml = await aggregator.get<string>('/v1/illumio/values.yaml');
    t.equal(yaml.status, 200);
    const values = parse(yaml.body) as Record<string, Record<string, unknown>>;
    t.same(Object.keys(values).sort(), ['cven', 'kubelink', 'storage']);
    t.match(values.cven, { resources: { requests: { cpu: '2', memory: '6Gi' }, limits: { cpu: '3', memory: '8Gi' } } });
    t.equal(values.storage!.sizeGi, 10);
    t.match(yaml.body, /80%/, 'says to raise limits at 80% usage');
    t.match((await step('sizing')).state, 'ready');
  });

  await t.test('the root CA ConfigMap: the wrong CA, then the right one; the PCE away', async (t) => {
    await api.create(rootCa(otherCa.caFile));
    await until('the PCE does not verify', async () => (await codes()).includes('ILLUMIO_PCE_TLS_UNTRUSTED') && !(await codes()).includes('ILLUMIO_ROOT_CA_MISSING'));
    const untrusted = (await findings()).find((f) => f.code === 'ILLUMIO_PCE_TLS_UNTRUSTED')!;
    t.equal(untrusted.severity, 'critical');
    t.match(JSON.stringify(untrusted.evidence), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/, 'the TLS error code');
    t.notOk(JSON.stringify(untrusted).includes('BEGIN CERTIFICATE'), 'never a PEM');
    await api.must('PUT', '/api/v1/namespaces/illumio-system/configmaps/root-ca-config', rootCa(privateCa.caFile));
    // testCa's CA is valid for a day: trusted, and expiring.
    await until('trusted', async () => JSON.stringify((await codes()).filter((c) => c.startsWith('ILLUMIO_'))) === '["ILLUMIO_ROOT_CA_EXPIRING"]');
    const expiring = (await findings()).find((f) => f.code === 'ILLUMIO_ROOT_CA_EXPIRING')!;
    t.equal(expiring.severity, 'warning');
    t.match(expiring.message, /expires/);
    t.equal((await step('root-ca')).state, 'ready', 'ready, and the expiry is said');
    t.ok((await step('root-ca')).findings.includes(expiring.id), 'the expiring finding qualifies the step');
    t.equal((await aggregator.alertsFor('finding resolved', untrusted.id)).length, 1, 'resolved once');
    t.equal(aggregator.alerts('finding raised').filter((a) => a.id === untrusted.id).length, 1, 'raised once, though probed every second');
  });

  await t.test('an intermediate CA without its root: ILLUMIO_ROOT_CA_INTERMEDIATE; with the root: resolved', async (t) => {
    const pki = makePki();
    const withData = (pem: string) => ({ ...rootCa(privateCa.caFile), data: { 'root-ca.crt': pem } });
    await api.must('PUT', '/api/v1/namespaces/illumio-system/configmaps/root-ca-config', withData(pki.intermediate.cert));
    await until('the intermediate is named', async () => (await codes()).includes('ILLUMIO_ROOT_CA_INTERMEDIATE'));
    const intermediate = (await findings()).find((f) => f.code === 'ILLUMIO_ROOT_CA_INTERMEDIATE')!;
    t.equal(intermediate.severity, 'warning');
    t.match(intermediate.message, /"CN=nodeprep test Intermediate CA" is an intermediate CA \(issued by "CN=nodeprep test Root CA"\), not the root CA the guide asks for/);
    t.equal((await step('root-ca')).state, 'not-ready');
    t.ok((await step('root-ca')).findings.includes(intermediate.id), 'it blocks the root CA step');
    // The chain up to its self-signed root, in the same key: no longer an intermediate alone.
    await api.must('PUT', '/api/v1/namespaces/illumio-system/configmaps/root-ca-config', withData(pki.intermediate.cert + pki.root.cert));
    await until('the root is there', async () => !(await codes()).includes('ILLUMIO_ROOT_CA_INTERMEDIATE'));
    t.equal((await aggregator.alertsFor('finding resolved', intermediate.id)).length, 1, 'resolved once');
    // Back to the CA that signed this PCE, for the steps that follow.
    await api.must('PUT', '/api/v1/namespaces/illumio-system/configmaps/root-ca-config', rootCa(privateCa.caFile));
    await until('trusted again', async () => JSON.stringify((await codes()).filter((c) => c.startsWith('ILLUMIO_'))) === '["ILLUMIO_ROOT_CA_EXPIRING"]');
  });

  await t.test('C-VEN deployed with less than the tier: ILLUMIO_UNDERSIZED; resized: resolved', async (t) => {
    const cven = (memory: string) => ({
      apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'illumio-ven', namespace: 'illumio-system' },
      spec: {
        selector: { matchLabels: { app: 'illumio-ven' } },
        template: { metadata: { labels: { app: 'illumio-ven' } }, spec: { containers: [{ name: 'illumio-ven', image: 'registry.invalid/ven', resources: { requests: { cpu: '2', memory }, limits: { cpu: '3', memory: '8Gi' } } }] } },
      },
    });
    await api.create(cven('600Mi'));
    await until('undersized', async () => (await codes()).includes('ILLUMIO_UNDERSIZED'));
    const undersized = (await findings()).find((f) => f.code === 'ILLUMIO_UNDERSIZED')!;
    t.match(JSON.stringify(undersized.evidence), /requests\.memory/);
    t.match(undersized.message, /600Mi/);
    await api.must('PUT', '/apis/apps/v1/namespaces/illumio-system/daemonsets/illumio-ven', cven('6Gi'));
    await until('resized', async () => !(await codes()).includes('ILLUMIO_UNDERSIZED'));
    t.pass('resolved');
  });

  await t.test('the nodes report: machine IDs unique, Calico in Append: ready', async (t) => {
    const reports = Object.entries(NODES).map(([name, id]) => {
      const root = path.join(dir, 'hosts', name);
      mkdirSync(path.join(root, 'etc'), { recursive: true });
      writeFileSync(path.join(root, 'etc/machine-id'), `${id}\n`);
      const made = spawnSync(process.execPath, [AGENT_BIN, 'collect', '--node-name', name, '--host-root', root, '--from-dump', `ipv4/nft=${path.join(IPTABLES_FIXTURES, 'calico-append.v4.nft.txt')}`], { encoding: 'utf8' });
      return made.stdout;
    });
    for (const body of reports) t.equal((await aggregator.post('/v1/reports', body, 'agents-token')).status, 202);
    await until('ready', async () => (await readiness()).ready);
    const answer = await readiness();
    t.same(answer.steps.map((s) => s.state), ['ready', 'ready', 'ready', 'ready']);
    t.same(answer.nodes, { reporting: 3, inCluster: 3 });
    t.equal(answer.tier, 'large');
    t.match((await aggregator.get<string>('/metrics')).body, /^nodeprep_ready 1$/m);
    t.match((await aggregator.get<string>('/metrics')).body, /nodeprep_readiness_step\{step="root-ca",state="ready"\} 1/);
  });

  await t.test('the PCE goes away: unreachable, said plainly, not as a certificate problem', async (t) => {
    await pce.close();
    await until('unreachable', async () => (await codes()).includes('ILLUMIO_PCE_UNREACHABLE'));
    const unreachable = (await findings()).find((f) => f.code === 'ILLUMIO_PCE_UNREACHABLE')!;
    t.equal(unreachable.severity, 'warning');
    t.match(unreachable.message, /refused/i);
    t.notOk((await codes()).includes('ILLUMIO_PCE_TLS_UNTRUSTED'), 'not the same thing as untrusted');
    t.equal((await step('root-ca')).state, 'unknown', 'the root CA step cannot be confirmed while the PCE is away');
  });
}

/** The "PCE": a TLS server on 127.0.0.1 that the test can take away. */
async function pceServer(cert: string, key: string): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ cert, key });
  server.on('secureConnection', (socket) => socket.end());
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let closed = false;
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      if (closed) return Promise.resolve();
      closed = true;
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const why = requireKube();
if (why) t.plan(0, why);
else await run();
