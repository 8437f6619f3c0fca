// Who may send and who may read, against the real Kubernetes API server: agents' ServiceAccount
// tokens from TokenRequest bound to Pods on Nodes, reviewed by the API server; shared tokens bound
// to clusters; readers checked with TokenReview and SubjectAccessReview against the chart's own
// viewer role; the aggregator over HTTPS with a CA the agents trust.
import { spawn } from 'node:child_process';
import { createSign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Reviews } from '../../aggregator/access/reviews.js';
import { SenderPolicy } from '../../aggregator/access/policy.js';
import { loadClusterAccess } from '../../aggregator/cluster/api.js';
import { AggregatorProcess } from '../support/aggregator-process.js';
import { AGENT_BIN, HOST_FIXTURES, IPTABLES_FIXTURES } from '../support/fixtures.js';
import { eventually } from '../support/cluster.js';
import { logCaughtUp } from '../support/log-caught-up.js';
import { accessCluster } from '../support/access-cluster.js';
import { requireKube, type ApiServer } from '../support/kube-apiserver.js';
import { testCa } from '../support/tls.js';

const DUMP = `ipv4/nft=${path.join(IPTABLES_FIXTURES, 'calico-append.v4.nft.txt')}`;

/** The report the built agent makes for a node, optionally of a named cluster. */
function reportFor(node: string, cluster?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AGENT_BIN, 'collect', '--node-name', node, ...(cluster ? ['--cluster', cluster] : []), '--host-root', path.join(HOST_FIXTURES, 'unique'), '--from-dump', DUMP]);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`collect exited ${code}`))));
  });
}

/**
 * A token past its expiry that the API server itself would have issued: a real one's header and
 * claims, dated an hour earlier, signed with the server's ServiceAccount key.
 */
function expired(token: string, signingKey: string): string {
  const [header, payload] = token.split('.') as [string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, number>;
  const shift = (claims.exp! - claims.iat!) + 3600;
  for (const claim of ['iat', 'nbf', 'exp']) if (typeof claims[claim] === 'number') claims[claim] -= shift;
  const body = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const signature = createSign('RSA-SHA256').update(body).sign(signingKey).toString('base64url');
  return `${body}.${signature}`;
}

/** Sum of the API server's own counter of TokenReviews created. */
async function tokenReviewsServed(api: ApiServer): Promise<number> {
  const text = (await api.request<string>('GET', '/metrics')).body;
  let total = 0;
  for (const line of String(text).split('\n')) {
    if (line.startsWith('apiserver_request_total{') && line.includes('resource="tokenreviews"') && line.includes('verb="POST"')) total += Number(line.split(' ').pop());
  }
  return total;
}

// What an OIDC or webhook authenticator may answer about a token it does not accept: a message
// that names audiences, whoever the token's holder is.
const WEBHOOK_TOKEN = 'webhook-token-of-nobody';
const WEBHOOK_ERROR = 'token audience "other-app" does not match the expected audience';

/**
 * A token webhook (kube-apiserver --authentication-token-webhook-config-file) on loopback that
 * refuses WEBHOOK_TOKEN with WEBHOOK_ERROR and knows no other token; the path of its config. It
 * is audience-aware (it answers with the audiences asked for): kube-apiserver passes a webhook's
 * answer on for a review with audiences only then.
 */
async function tokenWebhook(t: Test): Promise<string> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const review = JSON.parse(body) as { spec: { token: string; audiences?: string[] } };
      const known = review.spec.token === WEBHOOK_TOKEN;
      res.setHeader('content-type', 'application/json');
      const status = { authenticated: false, audiences: review.spec.audiences ?? [], ...(known ? { error: WEBHOOK_ERROR } : {}) };
      res.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', status }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-webhook-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'webhook.kubeconfig');
  const { port } = server.address() as AddressInfo;
  writeFileSync(config, [
    'apiVersion: v1', 'kind: Config',
    'clusters:', '- name: webhook', '  cluster:', `    server: http://127.0.0.1:${port}/`,
    'users:', '- name: apiserver', '  user: {}',
    'contexts:', '- name: webhook', '  context: {cluster: webhook, user: apiserver}',
    'current-context: webhook', '',
  ].join('\n'));
  return config;
}

async function run(): Promise<void> {
  t.setTimeout(240_000);
  const webhook = await tokenWebhook(t);
  const cluster = await accessCluster(t, { flags: [`--authentication-token-webhook-config-file=${webhook}`, '--authentication-token-webhook-version=v1'] });
  const { api, dir, kubeconfig } = cluster;
  const pods: Record<string, string> = {};
  for (const node of ['n1', 'n2']) {
    await api.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: node } });
    for (const sa of ['nodeprep-agent', 'intruder']) {
      const pod = await api.create({
        apiVersion: 'v1', kind: 'Pod', metadata: { name: `${sa}-${node}`, namespace: 'nodeprep' },
        spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: 'c', image: 'registry.invalid/x' }] },
      });
      pods[`${sa}-${node}`] = String(pod.metadata.uid);
    }
  }
  const agentToken = (node: string, audiences = ['nodeprep'], sa = 'nodeprep-agent') =>
    api.serviceAccountToken('nodeprep', sa, { audiences, boundPod: { name: `${sa}-${node}`, uid: pods[`${sa}-${node}`]! } });
  const tokens = {
    n1: await agentToken('n1'),
    n2: await agentToken('n2'),
    wrongAudience: await agentToken('n1', ['somebody-else']),
    intruder: await agentToken('n1', ['nodeprep'], 'intruder'),
    unbound: await api.serviceAccountToken('nodeprep', 'nodeprep-agent', { audiences: ['nodeprep'] }),
    reader: cluster.reader,
    notReader: cluster.intruder,
  };
  const stale = expired(tokens.n1, readFileSync(path.join(api.dir, 'sa.key'), 'utf8'));

  const ca = testCa(t);
  const serving = ca.server('IP:127.0.0.1');
  writeFileSync(path.join(dir, 'tls.crt'), serving.cert);
  writeFileSync(path.join(dir, 'tls.key'), serving.key);
  writeFileSync(path.join(dir, 'tokens'), 'edge-secret edge\n');
  const aggregator = await AggregatorProcess.start(
    {
      KUBECONFIG: kubeconfig, HOME: dir, AGENT_SERVICE_ACCOUNT: 'nodeprep/nodeprep-agent', AUTH_TOKEN_FILE: path.join(dir, 'tokens'),
      TLS_CERT_FILE: path.join(dir, 'tls.crt'), TLS_KEY_FILE: path.join(dir, 'tls.key'),
    },
    { ca: readFileSync(ca.caFile, 'utf8') },
  );
  t.teardown(() => aggregator.stop('SIGKILL'));
  if (!aggregator.base.startsWith('https:')) throw new Error(`the aggregator serves ${aggregator.base}, not HTTPS`);

  const reports = { n1: await reportFor('n1'), n2: await reportFor('n2'), edge: await reportFor('w1', 'edge'), other: await reportFor('w1', 'other'), n1AsEdge: await reportFor('n1', 'edge') };
  const send = async (body: string, token?: string) => {
    const res = await aggregator.post<{ message?: string }>('/v1/reports', body, token);
    return { status: res.status, message: res.body.message ?? '' };
  };

  await t.test('an agent speaks for its own node, and only with its own token', async (t) => {
    t.equal((await send(reports.n1, tokens.n1)).status, 202, 'n1\'s token, n1\'s report');
    t.equal((await send(reports.n2, tokens.n2)).status, 202, 'n2\'s token, n2\'s report');
    const cases: [string, string, string | undefined, number, RegExp][] = [
      ['another node\'s token', reports.n1, tokens.n2, 403, /the agent on node n2, and the report is for node n1/],
      ['the wrong audience', reports.n1, tokens.wrongAudience, 403, /the token is for audience "somebody-else", not "nodeprep"/],
      ['another ServiceAccount', reports.n1, tokens.intruder, 403, /system:serviceaccount:nodeprep:intruder may not send reports/],
      ['an expired token', reports.n1, stale, 401, /not accepted: .*expired/i],
      ['a token bound to no pod', reports.n1, tokens.unbound, 403, /names no node/],
      ['no token', reports.n1, undefined, 401, /missing bearer token/],
      ['an agent of this cluster claiming another', reports.n1AsEdge, tokens.n1, 403, /report as cluster ""/],
    ];
    for (const [what, body, token, status, message] of cases) {
      for (let i = 0; i < 3; i++) {
        const res = await send(body, token);
        t.equal(res.status, status, `${what}: ${status}`);
        if (i === 0) t.match(res.message, message, `${what}: says why`);
      }
    }
    const refusedLines = () => aggregator.logged().filter((l) => l.msg === 'report refused');
    await logCaughtUp(() => refusedLines().length >= cases.length);
    const refused = refusedLines();
    t.equal(refused.length, cases.length, 'one log line per cause, not per request');
    const metrics = (await aggregator.get<string>('/metrics', tokens.reader)).body;
    for (const [reason, count] of [['forbidden_node', 6], ['forbidden_audience', 3], ['forbidden_service_account', 3], ['forbidden_cluster', 3], ['unauthorized', 6]] as const) {
      t.match(metrics, new RegExp(`nodeprep_reports_rejected_total\\{reason="${reason}"\\} ${count}\\b`), `${reason} counted`);
    }
    t.notOk(aggregator.lines.some((l) => l.includes(tokens.n1.slice(-20))), 'no token in the logs');
  });

  await t.test('"wrong audience" is what the API server verified, never an authenticator\'s wording', async (t) => {
    // The webhook refuses its token with a message about audiences: a 401, the token is nobody's.
    const webhooked = await send(reports.n1, WEBHOOK_TOKEN);
    t.equal(webhooked.status, 401, 'a token the webhook authenticator refuses');
    t.match(webhooked.message, WEBHOOK_ERROR, 'though its message, passed on, speaks of audiences');
    // A JWT that claims another audience, signed by nobody the API server trusts.
    const forged = `${tokens.wrongAudience.split('.').slice(0, 2).join('.')}.${Buffer.from('not the signature').toString('base64url')}`;
    t.equal((await send(reports.n1, forged)).status, 401, 'a forged token claiming another audience');
    const wrong = await send(reports.n1, tokens.wrongAudience);
    t.equal(wrong.status, 403, 'a real token for another audience: the API server accepts it for that audience');
    t.match(wrong.message, /the token is for audience "somebody-else", not "nodeprep": project the ServiceAccount token with audience nodeprep/);
  });

  await t.test('shared tokens: each bound to one cluster', async (t) => {
    t.equal((await send(reports.edge, 'edge-secret')).status, 202, 'edge\'s token, edge\'s report');
    const other = await send(reports.other, 'edge-secret');
    t.equal(other.status, 403);
    t.match(other.message, /bound to cluster edge, and the report is from cluster other/);
    t.equal((await send(reports.n1, 'edge-secret')).status, 403, 'nor the home cluster\'s nodes');
  });

  await t.test('heartbeats cost one TokenReview per token per cache lifetime', async (t) => {
    const before = await tokenReviewsServed(api);
    for (let i = 0; i < 25; i++) {
      t.equal((await send(reports.n1, tokens.n1)).status, 202);
      t.equal((await send(reports.n2, tokens.n2)).status, 202);
    }
    t.equal(await tokenReviewsServed(api), before, 'no review: both tokens were reviewed before and are cached');
    const fresh = await agentToken('n1');
    for (let i = 0; i < 10; i++) t.equal((await send(reports.n1, fresh)).status, 202);
    t.equal(await tokenReviewsServed(api), before + 1, 'a rotated token: one review, then cached');
  });

  await t.test('a token in use is reviewed again before its answer expires, in the background', async (t) => {
    const access = loadClusterAccess({ KUBECONFIG: kubeconfig, HOME: dir }, 'auto');
    if (!('api' in access)) return t.fail(access.off);
    t.teardown(() => access.api.close());
    let clock = 1_000_000;
    let asked = 0;
    const cacheMs = 60_000;
    const reviews = new Reviews(access.api, cacheMs, { asked: () => asked++, cached: () => {} }, { now: () => clock });
    const pod = await api.create({
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nodeprep-agent-refresh', namespace: 'nodeprep' },
      spec: { nodeName: 'n1', serviceAccountName: 'nodeprep-agent', containers: [{ name: 'c', image: 'registry.invalid/x' }] },
    });
    const token = await api.serviceAccountToken('nodeprep', 'nodeprep-agent', { audiences: ['nodeprep'], boundPod: { name: 'nodeprep-agent-refresh', uid: String(pod.metadata.uid) } });
    const review = () => reviews.tokenReview(token, ['nodeprep']);
    t.match(await review(), { authenticated: true }, 'first sight: reviewed');
    clock += cacheMs / 2;
    t.match(await review(), { authenticated: true });
    t.equal(asked, 1, 'half-way through its lifetime: the cached answer, no review');
    clock += cacheMs * 0.3;
    t.match(await review(), { authenticated: true }, 'in the last quarter: the cached answer at once...');
    await eventually('the background review', 10, async () => asked === 2);
    clock += cacheMs * 0.5; // past the first answer's expiry, not the second's
    t.match(await review(), { authenticated: true });
    t.equal(asked, 2, '...and the new answer serves past the old one\'s expiry, without a review');

    // The pod goes: the next background review hears that its token is no longer valid.
    await api.must('DELETE', '/api/v1/namespaces/nodeprep/pods/nodeprep-agent-refresh?gracePeriodSeconds=0');
    // The API server itself caches a token's success for 10 s (kube-apiserver's token cache).
    await new Promise((r) => setTimeout(r, 11_000));
    clock += cacheMs * 0.3;
    t.match(await review(), { authenticated: true }, 'the answer held, while it is asked again');
    const refused = await eventually('the deleted pod\'s token refused', 10, async () => ((await review()).authenticated ? undefined : true));
    t.ok(refused, 'refused from the refresh on, before the cached answer would have expired');
    t.equal(asked, 3, 'one review for it');
  });

  await t.test('concurrent first requests with one token share one TokenReview', async (t) => {
    const fresh = await agentToken('n2');
    const before = await tokenReviewsServed(api);
    const answers = await Promise.all(Array.from({ length: 20 }, () => send(reports.n2, fresh)));
    t.same([...new Set(answers.map((a) => a.status))], [202], 'twenty reports at once, each accepted');
    t.equal(await tokenReviewsServed(api), before + 1, 'one TokenReview for them all');
  });

  /** Reviews of its own, with its own connection and request counts. */
  const ownReviews = (t: Test, options: ConstructorParameters<typeof Reviews>[3] = {}) => {
    const access = loadClusterAccess({ KUBECONFIG: kubeconfig, HOME: dir }, 'auto');
    if (!('api' in access)) throw new Error(access.off);
    t.teardown(() => access.api.close());
    const asked = new Map<string, number>();
    const reviews = new Reviews(access.api, 60_000, { asked: (kind) => asked.set(kind, (asked.get(kind) ?? 0) + 1), cached: () => {} }, options);
    return { reviews, asked: (kind: string) => asked.get(kind) ?? 0, requests: (kind: string) => access.api.requests.get(kind) ?? 0 };
  };

  await t.test('a pod that is not found is an answer too, held for the refusal lifetime', async (t) => {
    const { reviews, requests } = ownReviews(t);
    for (let i = 0; i < 5; i++) t.equal(await reviews.podNode('nodeprep', 'no-such-pod', undefined), undefined, 'no node');
    t.equal(requests('get'), 1, 'one GET of the pod for five look-ups');
    t.equal(await reviews.podNode('nodeprep', 'nodeprep-agent-n1', pods['nodeprep-agent-n1']), 'n1');
    t.equal(await reviews.podNode('nodeprep', 'nodeprep-agent-n1', pods['nodeprep-agent-n1']), 'n1');
    t.equal(requests('get'), 2, 'and one for a pod that is there');
  });

  await t.test('a flood of unknown tokens does not push out the answers in use', async (t) => {
    // Room for two answers of each kind: the agent's token stays through fifty refusals.
    const { reviews, requests } = ownReviews(t, { entries: { accepted: 2, refused: 2 } });
    const agent = await agentToken('n1');
    t.match(await reviews.tokenReview(agent, ['nodeprep']), { authenticated: true });
    for (let i = 0; i < 50; i++) t.match(await reviews.tokenReview(`unknown-${i}`, ['nodeprep']), { authenticated: false });
    t.equal(requests('tokenreview'), 51);
    t.match(await reviews.tokenReview(agent, ['nodeprep']), { authenticated: true });
    t.equal(requests('tokenreview'), 51, 'the agent\'s answer was still there');
    // Among acceptances, the least recently used goes first.
    const others = [await agentToken('n2'), await agentToken('n2')];
    await reviews.tokenReview(others[0]!, ['nodeprep']);
    await reviews.tokenReview(agent, ['nodeprep']); // used: others[0] is now the least recent
    await reviews.tokenReview(others[1]!, ['nodeprep']); // full: others[0] goes
    t.equal(requests('tokenreview'), 53);
    await reviews.tokenReview(agent, ['nodeprep']);
    t.equal(requests('tokenreview'), 53, 'the answer in use stayed');
    await reviews.tokenReview(others[0]!, ['nodeprep']);
    t.equal(requests('tokenreview'), 54, 'the least recently used was asked again');
  });

  await t.test('a SubjectAccessReview answer is kept for everything it was asked with', async (t) => {
    await api.create({
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'nodeprep-group-b-c' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'nodeprep-viewer' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'b,c' }],
    });
    const { reviews, asked } = ownReviews(t);
    const alice = { authenticated: true as const, username: 'alice', groups: ['a,b', 'c'], extra: {}, audiences: [] };
    t.equal(await reviews.mayGet(alice, '/v1/findings'), false, 'groups "a,b" and "c": not bound');
    t.equal(await reviews.mayGet({ ...alice, groups: ['a', 'b,c'] }, '/v1/findings'), true, 'groups "a" and "b,c": bound, not the answer for the other two');
    t.equal(asked('subjectaccessreview'), 2);
    await reviews.mayGet({ ...alice, uid: '1' }, '/v1/findings');
    await reviews.mayGet({ ...alice, uid: '2' }, '/v1/findings');
    await reviews.mayGet({ ...alice, extra: { scope: ['a,b'] } }, '/v1/findings');
    await reviews.mayGet({ ...alice, extra: { scope: ['a', 'b'] } }, '/v1/findings');
    t.equal(asked('subjectaccessreview'), 6, 'another uid or other extra values: another review (a webhook authorizer may decide by them)');
    await reviews.mayGet({ ...alice, extra: { scope: ['a', 'b'] } }, '/v1/findings');
    t.equal(asked('subjectaccessreview'), 6, 'the same again: cached');
  });

  await t.test('readers: a token the viewer role allows, nothing else; probes are open', async (t) => {
    for (const route of ['/v1/findings', '/v1/nodes', '/v1/nodes/n1', '/metrics']) {
      t.equal((await aggregator.get(route, undefined)).status, 401, `${route} without a token`);
      const denied = await aggregator.get<{ message: string }>(route, tokens.notReader);
      t.equal(denied.status, 403, `${route}: a ServiceAccount without the role`);
      t.match(denied.body.message, /nodeprep-viewer/);
      t.equal((await aggregator.get(route, tokens.reader)).status, 200, `${route}: the reader`);
    }
    t.equal((await aggregator.get('/healthz', undefined)).status, 200);
    t.equal((await aggregator.get('/readyz', undefined)).status, 200);
    t.equal((await aggregator.get('/v1/nodes', tokens.n1)).status, 401, 'an agent\'s token (audience nodeprep) is no API token: it does not read');
  });

  await t.test('refusals stay logged whatever a reader sends: a path is no cause', async (t) => {
    // Issue 20 item 2: 1,100 refused GETs of distinct paths used to fill the 1,024 causes for good.
    for (const name of ['flood', 'late']) await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: 'nodeprep' } });
    const flood = await api.serviceAccountToken('nodeprep', 'flood');
    const late = await api.serviceAccountToken('nodeprep', 'late');
    const statuses = new Set<number>();
    for (let i = 0; i < 1100; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, (_, j) => aggregator.get(`/v1/nodes/x${i + j}`, flood)));
      for (const res of batch) statuses.add(res.status);
    }
    t.same([...statuses], [403], 'each refused');
    t.equal((await aggregator.get('/v1/findings', late)).status, 403);
    const lines = (who: string) => aggregator.logged().filter((l) => l.msg === 'read refused' && String(l.cause).includes(`nodeprep:${who} `));
    await logCaughtUp(() => lines('late').length > 0);
    t.match(lines('late'), [{ reason: 'forbidden_reader', cause: 'reader system:serviceaccount:nodeprep:late on /v1/findings', route: 'GET /v1/findings' }], 'a new cause after the flood is logged');
    t.equal(lines('flood').length, 1, 'the flood is one cause, logged once this minute');
    t.notOk(aggregator.lines.some((l) => l.includes('/v1/nodes/x')), 'no requested path in the log');
  });

  await t.test('the node of a token that names only its pod comes from the pod', async (t) => {
    // The API server adds the node name to pod-bound tokens; older servers give only the pod.
    // The fallback asks the real API server for that pod's node.
    const access = loadClusterAccess({ KUBECONFIG: kubeconfig, HOME: dir }, 'auto');
    if (!('api' in access)) return t.fail(access.off);
    t.teardown(() => access.api.close());
    const policy = new SenderPolicy({ reviews: new Reviews(access.api, 60_000, { asked: () => {}, cached: () => {} }), agentServiceAccount: 'nodeprep/nodeprep-agent', audience: 'nodeprep', homeCluster: '' });
    const sender = { kind: 'agent' as const, serviceAccount: 'system:serviceaccount:nodeprep:nodeprep-agent', pod: { namespace: 'nodeprep', name: 'nodeprep-agent-n2', uid: pods['nodeprep-agent-n2']! } };
    t.equal(await policy.authorize(sender, { node: { name: 'n2' } }), undefined, 'its pod runs on n2');
    t.match(await policy.authorize(sender, { node: { name: 'n1' } }), { status: 403, reason: 'forbidden_node' });
    const gone = { ...sender, pod: { ...sender.pod, uid: 'another-pod-of-that-name' } };
    t.match(await policy.authorize(gone, { node: { name: 'n2' } }), { status: 403, reason: 'forbidden_node' }, 'a pod of the same name but another uid is not the token\'s');
  });

  await t.test('the agent trusts the aggregator\'s CA, and refuses another', async (t) => {
    writeFileSync(path.join(dir, 'agent-token'), `${tokens.n1}\n`);
    const agentRun = (caFile: string) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [AGENT_BIN, 'run', '--once', '--node-name', 'n1', '--host-root', path.join(HOST_FIXTURES, 'unique'), '--from-dump', DUMP,
          '--aggregator-url', aggregator.base, '--token-file', path.join(dir, 'agent-token'), '--ca-file', caFile, '--sample-interval', '0.2']);
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, out });
        });
      });
    const trusted = await agentRun(ca.caFile);
    t.equal(trusted.code, 0, 'delivered over HTTPS with the aggregator\'s CA');
    const otherCa = testCa(t);
    const refused = await agentRun(otherCa.caFile);
    t.equal(refused.code, 1, 'not delivered');
    t.match(refused.out, /certificate rejected/, 'said as a certificate problem, not an outage');
  });
}

const why = requireKube();
if (why) t.plan(0, why);
else await run();
