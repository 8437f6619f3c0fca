// The cluster view's watches against the real kube-apiserver, counted from the server's side (its
// audit log): an idle view holds one watch per resource, asking for bookmarks and minutes; in a
// busy cluster the bookmarks move each watch's version though nothing it watches changes, and the
// next watch starts from there without a list; after the only API server restarts, a list only
// where the server has forgotten the version; when one of two API servers stops, the watches go on
// at the other without any list. Watches run for seconds here (WatchTiming) where they run for
// minutes in the aggregator; the idle view runs with the aggregator's own timing.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { Agent, request } from 'undici';
import { loadClusterAccess } from '../../aggregator/cluster/api.js';
import { Supervised } from '../../aggregator/cluster/informers.js';
import { ClusterView, slimConfigMap, slimNode } from '../../aggregator/cluster/view.js';
import { AuditLog, type AuditedRequest } from '../support/audit-log.js';
import { eventually } from '../support/cluster.js';
import { ApiServer, requireKube } from '../support/kube-apiserver.js';
import { TcpProxy } from '../support/tcp-proxy.js';

const VIEW_USER = 'system:serviceaccount:nodeprep:view';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rv = (r: AuditedRequest) => Number(r.query.get('resourceVersion'));
/** An informer's requests are told apart by path and selector. */
const informerOf = (r: AuditedRequest) => `${r.path}?${r.query.get('fieldSelector') ?? ''}`;

/** The log lines the code under test writes, parsed. */
function capturedLog() {
  const lines: { msg: string; resource?: string }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) });
  return { log, lines };
}

async function run(): Promise<void> {
  t.setTimeout(420_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-watch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const audit = new AuditLog(dir, 'audit-a');
  const server = await ApiServer.start({ flags: audit.flags });
  t.teardown(() => server.stop());
  await server.installCrds('felixconfigurations', 'installations');
  for (const ns of ['nodeprep', 'illumio-system', 'watched', 'busy']) await server.ensureNamespace(ns);
  // The view reads as a ServiceAccount of its own, so that the audit log tells its requests apart.
  await server.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'view', namespace: 'nodeprep' } });
  await server.create({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'view' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
    subjects: [{ kind: 'ServiceAccount', name: 'view', namespace: 'nodeprep' }],
  });
  await server.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'worker-1' } });
  await server.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'target', namespace: 'watched' }, data: { a: '1' } });

  // The view reaches the API server through a proxy, as through a load balancer in front of an
  // HA control plane: the last test moves it to a second API server.
  const proxy = await TcpProxy.start(Number(new URL(server.url).port));
  t.teardown(() => proxy.close());
  const kubeconfig = path.join(dir, 'view.kubeconfig');
  writeFileSync(kubeconfig, readFileSync(server.kubeconfigFor(await server.serviceAccountToken('nodeprep', 'view', { expirationSeconds: 7200 }), 'view'), 'utf8').replace(server.url, `https://127.0.0.1:${proxy.port}`));
  const access = loadClusterAccess({ KUBECONFIG: kubeconfig, HOME: dir }, 'auto');
  if (!('api' in access)) throw new Error(access.off);
  const api = access.api;
  t.teardown(() => api.close());
  const viewRequests = (log: AuditLog, verb: string, since = 0) => log.requests().filter((r) => r.user === VIEW_USER && r.verb === verb && r.receivedAt >= since);

  await t.test('an idle view holds one watch per resource, asking for bookmarks and minutes', async (t) => {
    const { log } = capturedLog();
    const view = new ClusterView(api, {
      homeCluster: '', agentServiceAccount: 'nodeprep/nodeprep-agent', cvenNamespace: 'illumio-system', cvenDaemonSet: 'illumio-ven',
      kubelinkDeployment: 'illumio-kubelink', rootCaConfigMap: 'illumio-system/root-ca-config', calicoConfigMaps: ['calico-config'],
    }, log, () => {});
    t.teardown(() => view.stop());
    const since = Date.now();
    view.start();
    await eventually('the view synced', 30, async () => view.status().state === 'synced');
    const resources = Object.keys(view.status().resources).length;
    // Past the 30 s after which client-node's Watch dropped a silent watch, and past the minute
    // after which the API server's watch cache sends a bookmark where it has a newer version.
    await sleep(65_000);
    const lists = viewRequests(audit, 'list', since);
    const watches = viewRequests(audit, 'watch', since);
    // The figure of issue 20 (target: at most one watch per resource per 5 minutes when idle).
    const minutes = (Date.now() - since) / 60_000;
    t.comment(`idle view: ${watches.length} watch requests for ${resources} resources in ${(minutes * 60).toFixed(0)} s (${(watches.length / minutes).toFixed(1)} a minute, the first watch of each included), ${lists.length} lists`);
    t.equal(new Set(lists.map(informerOf)).size, resources, `${resources} resources listed`);
    t.equal(lists.length, resources, 'each once');
    t.equal(watches.length, resources, `one watch per resource in ${((Date.now() - since) / 1000).toFixed(0)} s`);
    t.same(new Set(watches.map(informerOf)), new Set(lists.map(informerOf)), 'for each resource listed');
    for (const w of watches) {
      t.equal(w.query.get('allowWatchBookmarks'), 'true', `${informerOf(w)}: bookmarks asked for`);
      const timeout = Number(w.query.get('timeoutSeconds'));
      t.ok(timeout >= 300 && timeout <= 600, `${informerOf(w)}: timeoutSeconds ${timeout}, between 5 and 10 minutes`);
      t.equal(w.completedAt, undefined, `${informerOf(w)}: still open`);
    }
    t.equal(api.requests.get('watch'), resources, 'and counted as asked');
  });

  // From here on, two informers watch with a timeout of 3 to 5 s: the reconnections that take
  // minutes in the aggregator take seconds.
  const { log, lines } = capturedLog();
  const timing = { minWatchSeconds: 3 };
  const configMaps = new Supervised(api, { name: 'target configmap', path: '/api/v1/namespaces/watched/configmaps', slim: slimConfigMap, fieldSelector: 'metadata.name=target' }, { log, onChange: () => {}, watch: timing, minDelayMs: 200 });
  const nodes = new Supervised(api, { name: 'nodes', path: '/api/v1/nodes', slim: slimNode }, { log, onChange: () => {}, watch: timing, minDelayMs: 200 });
  const informers = [configMaps, nodes];
  t.teardown(() => Promise.all(informers.map((i) => i.stop())));
  const version = (i: Supervised<unknown>) => Number(i.cache.latestResourceVersion());
  // A busy cluster: ConfigMaps written elsewhere, and consistent lists (which make the API server
  // ask etcd for progress, so that every watch cache learns the newest version).
  let churning = true;
  let written = 0;
  const churn = (async () => {
    while (churning) {
      await server.request('POST', '/api/v1/namespaces/busy/configmaps', { metadata: { name: `churn-${written++}` } }).catch(() => undefined);
      await server.request('GET', '/api/v1/nodes').catch(() => undefined);
      await sleep(200);
    }
  })();
  t.teardown(async () => {
    churning = false;
    await churn;
  });

  await t.test('bookmarks move the version; each watch starts from it, with no list', async (t) => {
    const since = Date.now();
    for (const i of informers) i.start();
    await eventually('listed', 30, async () => informers.every((i) => i.state === 'synced'));
    const listed = version(configMaps);
    await sleep(16_000);
    const watches = viewRequests(audit, 'watch', since).filter((w) => informerOf(w) === '/api/v1/namespaces/watched/configmaps?metadata.name=target');
    t.equal(viewRequests(audit, 'list', since).filter((l) => informerOf(l) === informerOf(watches[0]!)).length, 1, 'listed once');
    t.ok(watches.length >= 3, `${watches.length} watches in 16 s`);
    t.equal(rv(watches[0]!), listed, 'the first from the list\'s version');
    for (let k = 1; k < watches.length; k++) t.ok(rv(watches[k]!) > rv(watches[k - 1]!), `watch ${k + 1} from a newer version (${rv(watches[k]!)} > ${rv(watches[k - 1]!)}), though nothing it watches changed`);
    for (const w of watches.filter((w) => w.completedAt !== undefined)) {
      const timeout = Number(w.query.get('timeoutSeconds'));
      t.ok(timeout >= 3 && timeout <= 6 && w.completedAt! - w.receivedAt >= timeout * 1000 - 500, `ended by the server after its timeoutSeconds ${timeout}`);
    }
    t.same(configMaps.cache.list().map((c) => [c.name, c.data]), [['target', { a: '1' }]], 'the cache kept what it had');
    t.ok(written > 50, `while ${written} ConfigMaps were written elsewhere`);
  });

  await t.test('the only API server restarted: a list only where it has forgotten the version', async (t) => {
    const listsBefore = viewRequests(audit, 'list').length;
    await server.stopApiServer();
    // What each informer holds now, with no server to move it.
    const held = informers.map(version);
    await sleep(1000);
    await server.startApiServer();
    const restarted = Date.now();
    await eventually('watching again', 60, async () => informers.every((i) => i.state === 'synced') && new Set(viewRequests(audit, 'watch', restarted).map(informerOf)).size === 2);
    // The restarted server's watch cache begins at its own start: an older version is gone.
    const forgotten = await Promise.all(informers.map(async (i, k) => {
      const res = await server.request<string>('GET', `${i.spec.path}?watch=true&timeoutSeconds=1&resourceVersion=${held[k]}`);
      return /"code":410/.test(JSON.stringify(res.body));
    }));
    const relisted = viewRequests(audit, 'list').length - listsBefore;
    t.equal(relisted, forgotten.filter(Boolean).length, `${relisted} lists: one for each informer whose version the server answers 410 (${forgotten})`);
    const expired = lines.filter((l) => l.msg === 'cluster view: the watch\'s version expired; listing again');
    t.equal(expired.length, relisted, 'each logged once');
    await server.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'worker-2' } });
    await eventually('a change after the restart', 30, async () => nodes.cache.list().some((n) => n.name === 'worker-2'));
  });

  await t.test('one of two API servers stopped: the watches go on at the other, with no list', async (t) => {
    const auditB = new AuditLog(dir, 'audit-b');
    const peer = await server.startPeer(auditB.flags);
    // A version the second server's watch caches are sure to hold: one they have reached.
    const peerAgent = new Agent({ connect: { ca: server.ca } });
    t.teardown(() => peerAgent.close());
    const cached = async () => {
      const res = await request(`https://127.0.0.1:${peer.port}/metrics`, { dispatcher: peerAgent, headers: { authorization: `Bearer ${server.adminToken}` } });
      const text = await res.body.text();
      const versions = ['configmaps', 'nodes'].map((r) => Number(new RegExp(`^apiserver_watch_cache_resource_version\\{group="",resource="${r}"\\} (\\S+)$`, 'm').exec(text)?.[1]));
      return versions.every((v) => v > 0) ? Math.max(...versions) : undefined;
    };
    const bVersion = await eventually('the second server\'s watch caches', 30, cached);
    await eventually('bookmarks carry every informer past the second server\'s start', 60, async () => informers.every((i) => version(i) >= bVersion));
    proxy.retarget(peer.port);
    const switched = Date.now();
    await server.stopApiServer();
    await eventually('watching at the second server', 60, async () => new Set(viewRequests(auditB, 'watch', switched).map(informerOf)).size === 2);
    t.same(viewRequests(auditB, 'list').map(informerOf), [], 'no list at the second server');
    for (const w of viewRequests(auditB, 'watch', switched)) t.ok(rv(w) >= bVersion, `${informerOf(w)} from ${rv(w)}, the version the bookmarks brought`);
    // The first server back (as in a rolling restart); a change made there reaches the watch held at the second.
    await server.startApiServer();
    await server.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'worker-3' } });
    await eventually('a change after the switch', 30, async () => nodes.cache.list().some((n) => n.name === 'worker-3'));
    t.same(viewRequests(auditB, 'list').map(informerOf), [], 'still no list');
    await peer.stop();
  });
}

const why = requireKube();
if (why) t.plan(0, why);
else await run();
