// Access decided by the route (aggregator/access/routes.ts, hooks.ts): every route declares who
// may call it, a route that does not stops the start, and the check runs on the route the router
// matched. The attacks are HTTP/1.1 written by hand on a socket, so that no client library
// normalises a spelling away, against the built aggregator with readers checked by the real API
// server (issue 20, item 1: GET /%761/findings, GET /%6detrics and the absolute form
// GET http://host/v1/findings were answered 200 without a token).
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import Fastify from 'fastify';
import t, { type Test } from 'tap';
import { buildApp } from '../../aggregator/app.js';
import { declareRouteAccess, matchedPath, RouteAccessError } from '../../aggregator/access/routes.js';
import { accessCluster } from '../support/access-cluster.js';
import { AggregatorProcess } from '../support/aggregator-process.js';
import { propertySeed } from '../support/fast-check.js';
import { requireKube } from '../support/kube-apiserver.js';
import { buildReport } from '../support/reports.js';

const config = { ttlSeconds: 60, dropAfterSeconds: 3600, logLevel: 'silent' as const, illumioChainPatterns: 'illumio*' };

t.test('a route that declares no access stops the start, a plugin\'s too', async (t) => {
  const undeclared = Fastify();
  declareRouteAccess(undeclared);
  undeclared.get('/declared', { config: { access: 'open' } }, async () => 'ok');
  // As a third-party plugin would add one (a documentation UI, say).
  await t.rejects(async () => {
    await undeclared.register(async (plugin) => {
      plugin.get('/docs', async () => 'docs');
    });
    await undeclared.ready();
  }, new RouteAccessError('route GET /docs declares no access (config.access: open | reader | agent): every route says who may call it'));

  const misspelt = Fastify();
  declareRouteAccess(misspelt);
  t.throws(() => misspelt.get('/x', { config: { access: 'public' as never } }, async () => 'x'), RouteAccessError, 'only open, reader or agent');

  const regex = Fastify();
  declareRouteAccess(regex);
  t.throws(() => regex.get('/v1/nodes/:id(^\\d+)', { config: { access: 'reader' } }, async () => 'x'), /cannot rebuild the path/, 'a path the SubjectAccessReview could not name');
});

t.test('every route of the aggregator declares its access, HEAD routes included', async (t) => {
  const app = await buildApp({ config, sweep: false });
  t.teardown(() => app.close());
  t.same(Object.fromEntries(app.access.routes), {
    'POST /v1/reports': 'agent',
    'GET /v1/nodes': 'reader', 'HEAD /v1/nodes': 'reader',
    'GET /v1/nodes/:name': 'reader', 'HEAD /v1/nodes/:name': 'reader',
    'GET /v1/findings': 'reader', 'HEAD /v1/findings': 'reader',
    'GET /v1/readiness': 'reader', 'HEAD /v1/readiness': 'reader',
    'GET /v1/illumio/sizing': 'reader', 'HEAD /v1/illumio/sizing': 'reader',
    'GET /v1/illumio/values.yaml': 'reader', 'HEAD /v1/illumio/values.yaml': 'reader',
    'GET /healthz': 'open', 'HEAD /healthz': 'open',
    'GET /readyz': 'open', 'HEAD /readyz': 'open',
    'GET /metrics': 'reader', 'HEAD /metrics': 'reader',
    'GET /openapi.json': 'open', 'HEAD /openapi.json': 'open',
  });
});

t.test('the path a SubjectAccessReview names: the pattern with its decoded parameters', async (t) => {
  t.equal(matchedPath('/v1/findings', {}), '/v1/findings');
  t.equal(matchedPath('/v1/nodes/:name', { name: 'edge/n1' }), '/v1/nodes/edge/n1', 'a key sent as edge%2Fn1');
  t.equal(matchedPath('/v1/nodes/:name', { name: 'a?b' }), '/v1/nodes/a?b', 'a decoded ? is part of the name, not a query');
  t.equal(matchedPath('/files/*', { '*': 'a/b' }), '/files/a/b');
});

/** One request written by hand; the status code of the answer, 0 when the server closed without one. */
function rawStatus(port: number, head: string, body = ''): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1');
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer to ${JSON.stringify(head.split('\r\n')[0])}`)));
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', reject);
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)));
    // Not end(): a half-closed socket may be dropped by the server before it answers a request
    // that waits for a review. "Connection: close" makes the server close once it has answered.
    socket.write(head + body, 'latin1');
  });
}

function requestHead(method: string, target: string, port: number, headers: Record<string, string>, body: string): string {
  const lines = [`${method} ${target} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  if (method === 'POST') lines.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

const hex = (c: string, lower = false) => {
  const code = `%${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`;
  return lower ? code.toLowerCase() : code;
};

/** The spellings of one path that a client, a proxy or an attacker might write. */
function spellings(path: string, port: number): string[] {
  const out = new Set<string>([path]);
  const segments = path.split('/').slice(1);
  for (let i = 0; i < path.length; i++) {
    if (/[A-Za-z0-9]/.test(path[i]!)) {
      out.add(path.slice(0, i) + hex(path[i]!) + path.slice(i + 1));
      out.add(path.slice(0, i) + hex(path[i]!, true) + path.slice(i + 1));
    }
  }
  out.add(path.replace(/[A-Za-z0-9]/g, (c) => hex(c)));
  out.add(path.replace(/[a-z]/g, (c) => hex(c, true)));
  for (const origin of [`http://127.0.0.1:${port}`, `HTTP://127.0.0.1:${port}`, 'http://attacker.example', `https://127.0.0.1:${port}`, `http://user@127.0.0.1:${port}`]) {
    out.add(origin + path);
    out.add(origin + path.replace(/[A-Za-z]/, (c) => hex(c)));
  }
  out.add(`/${path}`);
  for (let i = 0; i < segments.length; i++) {
    const at = (replace: (s: string) => string) => `/${segments.map((s, j) => (j === i ? replace(s) : s)).join('/')}`;
    out.add(at((s) => `/${s}`));
    out.add(at((s) => `./${s}`));
    out.add(at((s) => `%2e/${s}`));
    out.add(at((s) => `x/../${s}`));
    out.add(at((s) => `x/%2e%2e/${s}`));
    out.add(at((s) => `${s};a=b`));
    out.add(at((s) => `${s};`));
    out.add(at((s) => s.toUpperCase()));
    out.add(at((s) => s.charAt(0).toUpperCase() + s.slice(1)));
    if (i > 0) out.add(`/${segments.slice(0, i).join('/')}%2F${segments.slice(i).join('/')}`);
    if (i > 0) out.add(`/${segments.slice(0, i).join('/')}%2f${segments.slice(i).join('/')}`);
    if (i > 0) out.add(`/${segments.slice(0, i).join('\\')}\\${segments.slice(i).join('/')}`);
  }
  for (const tail of ['/', '/.', '/..', ';', ';x', '?', '?a=b', '?a=b&c', '?%2F', '#x', '?#', '%00', '%20', '.', '..', '%3F', '%23', '?/../metrics']) out.add(path + tail);
  out.add(path.toUpperCase());
  out.add(path.replace(/\//g, '//'));
  return [...out];
}

// A parameter's value for each route that has one: a node the test creates.
const NODE = 'edge/w1';
const canonical = (route: string) => matchedPath(route, { name: encodeURIComponent(NODE) });

async function run(t: Test): Promise<void> {
  const cluster = await accessCluster(t);
  const { api, dir } = cluster;
  writeFileSync(path.join(dir, 'tokens'), 'edge-secret edge\n');
  const aggregator = await AggregatorProcess.start({
    KUBECONFIG: cluster.kubeconfig, HOME: dir, AGENT_SERVICE_ACCOUNT: 'nodeprep/nodeprep-agent', AUTH_TOKEN_FILE: path.join(dir, 'tokens'),
  });
  t.teardown(() => aggregator.stop('SIGKILL'));
  const port = Number(new URL(aggregator.base).port);
  const report = JSON.stringify(buildReport({ name: 'w1', cluster: 'edge' }));
  t.equal((await aggregator.post('/v1/reports', report, 'edge-secret')).status, 202, 'a node to read');

  const local = await buildApp({ config, sweep: false });
  const routes = [...local.access.routes].filter(([, access]) => access !== 'open').map(([key, access]) => {
    const [method, pattern] = key.split(' ') as [string, string];
    return { method, pattern, access, path: canonical(pattern) };
  });
  await local.close();
  const send = (method: string, target: string, headers: Record<string, string> = {}) =>
    rawStatus(port, requestHead(method, target, port, headers, method === 'POST' ? report : ''), method === 'POST' ? report : '');

  await t.test('without a token, no spelling of a checked route is answered 2xx', async (t) => {
    const tally = new Map<number, number>();
    let requests = 0;
    for (const route of routes) {
      for (const target of spellings(route.path, port)) {
        for (const headers of [{}, { Authorization: 'Bearer not-a-token' }] as Record<string, string>[]) {
          const status = await send(route.method, target, headers);
          requests++;
          tally.set(status, (tally.get(status) ?? 0) + 1);
          if (status >= 200 && status < 300) t.fail(`${route.method} ${target} ${JSON.stringify(headers)}: ${status}`);
        }
      }
    }
    t.comment(`${requests} requests over ${routes.length} routes: ${[...tally].sort().map(([s, n]) => `${n} x ${s}`).join(', ')}`);
    t.ok((tally.get(401) ?? 0) > routes.length * 10, 'many spellings reach their route (and are refused there), not only 404s');
    t.notOk(tally.has(0), 'every request was answered');
  });

  await t.test('the spellings of the issue reach their route and are checked there', async (t) => {
    for (const target of ['/%761/findings', '/%76%31/readiness', '/%6detrics', `http://127.0.0.1:${port}/v1/findings`, '/v1/readiness?x=/metrics']) {
      t.equal(await send('GET', target), 401, `${target} without a token`);
      t.equal(await send('GET', target, { Authorization: `Bearer ${cluster.intruder}` }), 403, `${target}: a ServiceAccount without the role`);
      t.equal(await send('GET', target, { Authorization: `Bearer ${cluster.reader}` }), 200, `${target}: the reader`);
    }
    t.equal(await send('GET', '/v1/findings/'), 404, 'a spelling that matches no route is 404 (no route /v1/findings/)');
    t.equal(await send('GET', '/v1/x1'), 404, 'nor does an unknown path');
  });

  await t.test('the SubjectAccessReview names the decoded path the router matched, without the query', async (t) => {
    // A reader allowed exactly two paths (RBAC nonResourceURLs match whole paths, or a prefix with *).
    await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'narrow', namespace: 'nodeprep' } });
    await api.create({
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'narrow' },
      rules: [{ nonResourceURLs: ['/v1/findings', `/v1/nodes/${NODE}`], verbs: ['get'] }],
    });
    await api.create({
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'narrow' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'narrow' },
      subjects: [{ kind: 'ServiceAccount', name: 'narrow', namespace: 'nodeprep' }],
    });
    const narrow = { Authorization: `Bearer ${await api.serviceAccountToken('nodeprep', 'narrow')}` };
    for (const target of ['/v1/findings', '/v1/%66indings', '/v1/findings?severity=critical', `/v1/nodes/edge%2Fw1`, '/v1/nodes/%65dge%2f%77%31?x=1']) {
      t.equal(await send('GET', target, narrow), 200, `${target}: allowed as the path it decodes to`);
    }
    for (const target of ['/v1/nodes', '/v1/readiness', '/metrics', '/v1/nodes/edge%2Fw2']) t.equal(await send('GET', target, narrow), 403, `${target}: not allowed`);
  });

  await t.test('random encodings of every route: never 2xx without a token', async (t) => {
    // Each character kept, or percent-encoded in either case; then maybe an absolute-form
    // origin, doubled or dotted slashes, a ;parameter, a trailing slash, a query.
    const encoded = (text: string) =>
      fc.array(fc.constantFrom('keep', 'upper', 'lower'), { minLength: text.length, maxLength: text.length }).map((choices) =>
        [...text].map((c, i) => (choices[i] === 'keep' || c === '/' ? c : hex(c, choices[i] === 'lower'))).join(''),
      );
    const target = fc.constantFrom(...routes).chain((route) =>
      fc.record({
        route: fc.constant(route),
        path: encoded(route.path),
        origin: fc.constantFrom('', '', `http://127.0.0.1:${port}`, `hTtP://localhost:${port}`, 'http://x'),
        slashes: fc.constantFrom('/', '/', '//', '/./', '/%2e/', '/%2F'),
        suffix: fc.constantFrom('', '', '/', ';a', '?', '?q=1', '?q=%2Fmetrics', '#f'),
        token: fc.constantFrom(undefined, 'Bearer x', 'bearer', 'Basic eDp5'),
      }),
    );
    let reached = 0;
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(target, async ({ route, path: spelt, origin, slashes, suffix, token }) => {
        const [first, ...rest] = spelt.split('/').slice(1);
        const written = `${origin}/${first}${rest.length > 0 ? slashes : ''}${rest.join('/')}${suffix}`;
        const status = await send(route.method, written, token ? { Authorization: token } : {});
        runs++;
        if (status === 401) reached++;
        return status < 200 || status > 299;
      }),
      { seed: propertySeed(t), numRuns: 400 },
    );
    t.comment(`${runs} random spellings, ${reached} of them reached their route and were refused there`);
    t.ok(reached > runs / 10, 'the generator reaches routes, not only 404s');
  });
}

t.test('against the built aggregator, readers checked by the real API server', { skip: requireKube(), timeout: 300_000 }, run);
