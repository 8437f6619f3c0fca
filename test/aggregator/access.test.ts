// The access decisions that need no API server: bearer parsing, shared tokens bound to clusters,
// the sender policy with them, and the refusal log. ServiceAccount tokens, TokenReview and SubjectAccessReview are
// tested against the real API server in identity.test.ts.
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../aggregator/app.js';
import { bearerToken, jwtAudiences, jwtExpiry } from '../../aggregator/access/bearer.js';
import { SenderPolicy, type Refusal, type RejectReason } from '../../aggregator/access/policy.js';
import { RefusalLog } from '../../aggregator/access/refusal-log.js';
import { ReviewCache } from '../../aggregator/access/review-cache.js';
import { accessKey, identityOf } from '../../aggregator/access/reviews.js';
import { SharedTokens, parseSharedTokens } from '../../aggregator/access/shared-tokens.js';

t.test('the Bearer scheme is case-insensitive (RFC 7235)', async (t) => {
  for (const header of ['Bearer abc', 'bearer abc', 'BEARER abc', 'Bearer   abc', 'Bearer abc ']) t.equal(bearerToken(header), 'abc', JSON.stringify(header));
  for (const header of [undefined, '', 'abc', 'Basic abc', 'Bearer', 'Bearer ', 'Bearer a b', 'Bearerabc']) t.equal(bearerToken(header), undefined, JSON.stringify(header));
});

t.test('a JWT says when it expires; anything else does not', async (t) => {
  const jwt = (payload: unknown) => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;
  t.equal(jwtExpiry(jwt({ exp: 1767225600 })), 1767225600_000);
  t.equal(jwtExpiry(jwt({ sub: 'x' })), undefined);
  t.equal(jwtExpiry('not-a-jwt'), undefined);
  t.equal(jwtExpiry('a.!!!.c'), undefined);
});

t.test('shared token files: one cluster per token, a bare token is the home cluster', async (t) => {
  const tokens = parseSharedTokens('# the central aggregator\nedge-token edge-eu-1\ncore-token\n\nlab-token lab  # trailing comment\n', 'core');
  t.equal(tokens.size, 3);
  const shared = new SharedTokens();
  shared.replace(tokens);
  t.equal(shared.clusterOf('edge-token'), 'edge-eu-1');
  t.equal(shared.clusterOf('core-token'), 'core', 'a token alone is bound to the aggregator\'s own cluster');
  t.equal(shared.clusterOf('lab-token'), 'lab');
  t.equal(shared.clusterOf('nope'), undefined);
  t.throws(() => parseSharedTokens('\n# nothing\n', ''), /holds no token/);
  t.throws(() => parseSharedTokens('a one\na two\n', ''), /line 2: the same token is bound to two clusters/);
  t.throws(() => parseSharedTokens('a Prod_EU\n', ''), /line 1: the cluster name must be a DNS-1123 label/);
  t.throws(() => parseSharedTokens('a b c\n', ''), /line 1: expected "<token> \[cluster\]"/);
  t.doesNotThrow(() => parseSharedTokens('a one\na one\n', ''), 'the same line twice is harmless');
});

t.test('a shared token speaks for its cluster only', async (t) => {
  const shared = new SharedTokens();
  shared.replace(parseSharedTokens('edge-token edge\nhome-token\n', ''));
  const policy = new SenderPolicy({ shared, audience: 'nodeprep', homeCluster: '' });
  t.ok(policy.enabled);
  t.match(await policy.authenticate(undefined), { status: 401, reason: 'unauthorized' });
  t.match(await policy.authenticate('wrong'), { status: 401, reason: 'unauthorized', message: /unknown bearer token/ }, 'no cluster view: an unknown token cannot be reviewed');
  const edge = await policy.authenticate('edge-token');
  t.same(edge, { kind: 'shared', cluster: 'edge' });
  if ('status' in edge) return;
  t.equal(await policy.authorize(edge, { node: { name: 'w1', cluster: 'edge' } }), undefined);
  t.match(await policy.authorize(edge, { node: { name: 'w1', cluster: 'core' } }), { status: 403, reason: 'forbidden_cluster', message: /bound to cluster edge, and the report is from cluster core/ });
  t.match(await policy.authorize(edge, { node: { name: 'w1' } }), { status: 403, reason: 'forbidden_cluster' }, 'a report without a cluster is not edge\'s');
  const home = await policy.authenticate('home-token');
  if ('status' in home) return t.fail('home token refused');
  t.equal(await policy.authorize(home, { node: { name: 'w1' } }), undefined);
  t.match(await policy.authorize(home, { node: { name: 'w1', cluster: 'edge' } }), { status: 403, reason: 'forbidden_cluster' }, 'the home token cannot speak for edge');
});

t.test('nothing configured: reports are open (local mode), and the policy says so', async (t) => {
  const policy = new SenderPolicy({ audience: 'nodeprep', homeCluster: '' });
  t.notOk(policy.enabled);
  const sender = await policy.authenticate(undefined);
  t.same(sender, { kind: 'open' });
  if ('status' in sender) return;
  t.equal(await policy.authorize(sender, { node: { name: 'w1', cluster: 'anywhere' } }), undefined);
});

/** A RefusalLog on a clock the test moves, and the lines it wrote. */
function refusalLog(options: { maxCauses?: number } = {}) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('info', new Writable({ write(chunk, _e, done) { lines.push(JSON.parse(String(chunk)) as Record<string, unknown>); done(); } }) as never);
  const clock = { now: 1_000_000 };
  const log = new RefusalLog(logger, { windowMs: 60_000, now: () => clock.now, ...options });
  const refusal = (cause: string, reason: RejectReason = 'forbidden_reader'): Refusal => ({ status: 403, reason, message: 'no', cause });
  const from = { ip: '10.0.0.1', route: 'GET /v1/nodes/:name' };
  return { lines, clock, log, refusal, from, refused: () => lines.filter((l) => l.msg === 'read refused'), summaries: () => lines.filter((l) => String(l.msg).startsWith('refusals not logged')) };
}

t.test('refusals: one line per cause per minute, and a count of the rest', async (t) => {
  const { log, clock, refusal, from, refused, summaries } = refusalLog();
  for (let i = 0; i < 100; i++) log.refused('read', refusal('reader a on GET /v1/findings'), from);
  t.equal(refused().length, 1, 'a hundred refusals of one cause: one line');
  t.match(refused()[0], { level: 40, status: 403, reason: 'forbidden_reader', cause: 'reader a on GET /v1/findings', route: 'GET /v1/nodes/:name', from: '10.0.0.1' });
  log.refused('report', refusal('reader a on GET /v1/findings'), from);
  t.equal(refused().length, 1, 'a report refused for the same text is another kind of line');
  log.summarize();
  t.match(summaries(), [{ unlogged: 99, reasons: { forbidden_reader: 99 }, windowSeconds: 60 }], 'the window\'s end counts what was not logged');
  log.summarize();
  t.equal(summaries().length, 1, 'nothing unlogged since: no line');
  clock.now += 59_999;
  log.refused('read', refusal('reader a on GET /v1/findings'), from);
  t.equal(refused().length, 1, 'within the minute: not again');
  clock.now += 1;
  log.refused('read', refusal('reader a on GET /v1/findings'), from);
  t.equal(refused().length, 2, 'a minute on: logged again, so a cause is never silenced for good');
});

t.test('refusals: a flood of causes is bounded, counted, and silences nothing for good', async (t) => {
  const { log, clock, refusal, from, refused, summaries } = refusalLog({ maxCauses: 10 });
  for (let i = 0; i < 1100; i++) log.refused('read', refusal(`cause ${i}`), from);
  t.equal(refused().length, 10, 'the first maxCauses causes of the minute are logged');
  log.summarize();
  t.match(summaries(), [{ unlogged: 1090 }], 'the others are counted');
  clock.now += 60_000;
  log.summarize();
  log.refused('read', refusal('the next cause', 'unauthorized'), from);
  t.match(refused().at(-1), { cause: 'the next cause', reason: 'unauthorized' }, 'the next minute, a new cause is logged: the flood switched nothing off');
});

t.test('refusals: the summary line comes by itself, once a window, while the log runs', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('info', new Writable({ write(chunk, _e, done) { lines.push(JSON.parse(String(chunk)) as Record<string, unknown>); done(); } }) as never);
  // A window short enough to wait for (app.ts runs it with a minute).
  const log = new RefusalLog(logger, { windowMs: 20 });
  t.teardown(() => log.stop());
  log.start();
  const refusal: Refusal = { status: 403, reason: 'forbidden_reader', message: 'no', cause: 'one cause' };
  for (let i = 0; i < 5; i++) log.refused('read', refusal, { ip: '10.0.0.1', route: 'GET /v1/findings' });
  const summaries = () => lines.filter((l) => String(l.msg).startsWith('refusals not logged'));
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (summaries().length === 0) return;
      clearInterval(poll);
      resolve();
    }, 5);
  });
  t.match(summaries(), [{ unlogged: 4, reasons: { forbidden_reader: 4 }, windowSeconds: 0.02 }], 'the timer wrote the count of the four not logged, without being asked');
  t.equal(lines.filter((l) => l.msg === 'read refused').length, 1, 'and the cause itself once');
});

t.test('refusals of reports: a report\'s names are never part of the cause', async (t) => {
  const shared = new SharedTokens();
  shared.replace(parseSharedTokens('edge-token edge\n', ''));
  const policy = new SenderPolicy({ shared, audience: 'nodeprep', homeCluster: 'home' });
  const edge = { kind: 'shared' as const, cluster: 'edge' };
  const agent = { kind: 'agent' as const, serviceAccount: 'nodeprep/nodeprep-agent', node: 'n1' };
  const refusals: (Refusal | undefined)[] = [];
  for (let i = 0; i < 100; i++) {
    const node = { name: `attacker-node-${i}`, cluster: `attacker-cluster-${i}` };
    refusals.push(await policy.authorize(edge, { node }), await policy.authorize(agent, { node }), await policy.authorize(agent, { node: { name: node.name, cluster: 'home' } }));
  }
  t.equal(refusals.filter((r) => r?.status === 403).length, 300, 'each refused');
  t.ok(refusals.every((r) => r && /attacker-(node|cluster)-\d+/.test(r.message)), 'the answer to the caller names what it sent');
  const causes = new Set(refusals.map((r) => `${r?.reason} ${r?.cause}`));
  t.same([...causes].sort(), [
    'forbidden_cluster an agent of this cluster reports another cluster',
    'forbidden_cluster another cluster\'s report with the token of cluster "edge"',
    'forbidden_node the agent on node n1 sent another node\'s report',
  ], 'three hundred refusals, three causes');
});

t.test('an unverified JWT claims its audiences; only well-formed, few and short', async (t) => {
  const jwt = (payload: unknown) => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;
  t.same(jwtAudiences(jwt({ aud: 'nodeprep' })), ['nodeprep']);
  t.same(jwtAudiences(jwt({ aud: ['a', 'b'] })), ['a', 'b']);
  for (const payload of [{}, { aud: [] }, { aud: '' }, { aud: 42 }, { aud: ['a', 7] }, { aud: Array.from({ length: 9 }, (_, i) => `a${i}`) }, { aud: 'x'.repeat(257) }, ['aud']]) {
    t.equal(jwtAudiences(jwt(payload)), undefined, JSON.stringify(payload).slice(0, 60));
  }
  t.equal(jwtAudiences('not-a-jwt'), undefined);
});

t.test('a TokenReview answer counts only when it confirms an audience asked for', async (t) => {
  const user = { username: 'system:serviceaccount:nodeprep:nodeprep-agent', uid: 'u1', groups: ['system:serviceaccounts'] };
  t.match(identityOf({ authenticated: true, user, audiences: ['nodeprep'] }, ['nodeprep']), { authenticated: true, username: user.username, audiences: ['nodeprep'] });
  t.match(identityOf({ authenticated: true, user, audiences: ['other', 'nodeprep'] }, ['nodeprep']), { authenticated: true });
  // An authenticator that ignores audiences would pass a token minted for another service.
  t.match(identityOf({ authenticated: true, user }, ['nodeprep']), { authenticated: false, audiences: [], error: /without confirming audience "nodeprep" \(status\.audiences: none\)/ });
  t.match(identityOf({ authenticated: true, user, audiences: ['https://kubernetes.default.svc'] }, ['nodeprep']), { authenticated: false, audiences: ['https://kubernetes.default.svc'] });
  t.match(identityOf({ authenticated: true, user }, []), { authenticated: true, audiences: [] }, 'no audience asked: the API server\'s own, nothing to confirm');
  t.same(identityOf({ authenticated: false, error: 'expired' }, ['nodeprep']), { authenticated: false, error: 'expired' });
  t.same(identityOf({ authenticated: true, user: {} }, []), { authenticated: false, error: 'not authenticated' }, 'no username: nobody');
});

t.test('a SubjectAccessReview\'s cache key: whatever differs, the key does', async (t) => {
  const alice = { authenticated: true as const, username: 'alice', groups: ['a,b', 'c'], extra: {}, audiences: [] };
  const keys = [
    accessKey(alice, '/v1/findings'),
    accessKey({ ...alice, groups: ['a', 'b,c'] }, '/v1/findings'),
    accessKey({ ...alice, groups: ['a,b,c'] }, '/v1/findings'),
    accessKey({ ...alice, uid: '1' }, '/v1/findings'),
    accessKey({ ...alice, uid: '2' }, '/v1/findings'),
    accessKey({ ...alice, extra: { scope: ['a,b'] } }, '/v1/findings'),
    accessKey({ ...alice, extra: { scope: ['a', 'b'] } }, '/v1/findings'),
    accessKey({ ...alice, extra: { 'scope\u0000a': ['b'] } }, '/v1/findings'),
    accessKey({ ...alice, username: 'alice\u0000a,b' }, '/v1/findings'),
    accessKey(alice, '/v1/nodes'),
  ];
  t.equal(new Set(keys).size, keys.length, 'ten inputs, ten keys');
  t.equal(accessKey({ ...alice, extra: { a: ['1'], b: ['2'] } }, '/'), accessKey({ ...alice, extra: { b: ['2'], a: ['1'] } }, '/'), 'extra\'s key order does not matter');
});

t.test('the review cache: least recently used out first, refusals apart from acceptances', async (t) => {
  const cache = new ReviewCache<string>({ accepted: 2, refused: 2 });
  const now = 1000;
  cache.set('a', 'accepted', 'A', now + 100);
  cache.set('b', 'accepted', 'B', now + 100);
  t.equal(cache.entry('a', now)?.value, 'A', 'a used');
  cache.set('c', 'accepted', 'C', now + 100);
  t.equal(cache.entry('b', now), undefined, 'b, the least recently used, went');
  t.equal(cache.entry('a', now)?.value, 'A', 'a, used after b, stayed though it came first');
  for (let i = 0; i < 10; i++) cache.set(`unknown-${i}`, 'refused', 'no', now + 10);
  t.equal(cache.size('refused'), 2, 'refusals bounded');
  t.equal(cache.entry('a', now)?.value, 'A', 'ten refusals pushed out no acceptance');
  t.equal(cache.entry('c', now)?.value, 'C');
  cache.set('a', 'refused', 'now refused', now + 10);
  t.equal(cache.entry('a', now)?.value, 'now refused', 'a new answer replaces the old, in its own lane');
  t.equal(cache.size('accepted'), 1);
  t.equal(cache.entry('c', now + 100), undefined, 'expired');
  t.equal(cache.size('accepted'), 0, 'and dropped');
});
