// The aggregator's requests to the API server when the API server is slow, against the real
// kube-apiserver: its TokenReviews go through a webhook token authenticator (as OIDC or webhook
// authentication does in many clusters) that this test holds until it lets go, so reviews hang at
// the API server exactly as they would behind a slow identity provider, while lists and watches,
// which the webhook never sees, are answered at once. Shown: a request's deadline counts its wait
// for a place; a full line answers "busy" at once; a flood of reviews holds up neither the view's
// lists nor its watches; what was asked is counted; the aggregator answers a reader and an agent
// whose review finds the line full with a 503 and Retry-After at once.
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import t from 'tap';
import { buildApp, createLogger } from '../../aggregator/app.js';
import { Reviews } from '../../aggregator/access/reviews.js';
import { KubeApiBusyError, KubeApiTimeoutError, LANES, loadClusterAccess, type KubeApi } from '../../aggregator/cluster/api.js';
import { Supervised } from '../../aggregator/cluster/informers.js';
import { slimConfigMap } from '../../aggregator/cluster/view.js';
import { eventually } from '../support/cluster.js';
import { ApiServer, requireKube } from '../support/kube-apiserver.js';

/** A webhook token authenticator that answers "not authenticated", or holds every review until released. */
class TokenWebhook {
  // Reviews the API server has sent so far.
  seen = 0;
  private holding = true;
  private readonly held = new Set<http.ServerResponse>();
  readonly server = http.createServer((req, res) => {
    this.seen++;
    req.resume();
    req.on('end', () => {
      if (!this.holding) return answer(res);
      this.held.add(res);
      res.on('close', () => this.held.delete(res));
    });
  });

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as { port: number }).port;
  }

  hold(): void {
    this.holding = true;
  }

  release(): void {
    this.holding = false;
    for (const res of this.held) answer(res);
    this.held.clear();
  }

  close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function answer(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', status: { authenticated: false } }));
}

let serial = 0;
/** A TokenReview of a token no authenticator but the webhook can answer for. */
const review = (api: KubeApi, timeoutMs: number) =>
  api.request('POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: `opaque-${process.pid}-${serial++}` } }, { timeoutMs });

/** What a promise came to (its value or its error), and when, in ms from `since`. */
const outcome = <T>(promise: Promise<T>, since: number) =>
  promise.then(
    (value) => ({ value, error: undefined, ms: performance.now() - since }),
    (error: unknown) => ({ value: undefined, error: error as Error, ms: performance.now() - since }),
  );

/** The promise's outcome, or 'pending' if it has none within `ms`. */
const within = <T>(promise: Promise<T>, ms: number) => Promise.race([outcome(promise, performance.now()), new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);

async function run(): Promise<void> {
  t.setTimeout(180_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-lanes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const webhook = new TokenWebhook();
  const port = await webhook.listen();
  t.teardown(() => webhook.close());
  const webhookConfig = path.join(dir, 'webhook.kubeconfig');
  writeFileSync(webhookConfig, [
    'apiVersion: v1', 'kind: Config',
    'clusters:', '- name: webhook', '  cluster:', `    server: http://127.0.0.1:${port}/`,
    'users:', '- name: kube-apiserver', '  user: {}',
    'contexts:', '- name: webhook', '  context:', '    cluster: webhook', '    user: kube-apiserver',
    'current-context: webhook', '',
  ].join('\n'));
  const server = await ApiServer.start({ flags: [`--authentication-token-webhook-config-file=${webhookConfig}`, '--authentication-token-webhook-cache-ttl=0s', '--authentication-token-webhook-version=v1'] });
  t.teardown(() => server.stop());
  await server.ensureNamespace('watched');

  const access = loadClusterAccess({ KUBECONFIG: server.adminKubeconfig, HOME: dir }, 'auto');
  if (!('api' in access)) throw new Error(access.off);
  const api = access.api;
  t.teardown(() => api.close());
  const places = LANES.reviews.inFlight;
  const line = LANES.reviews.waiting;

  // The webhook answers at once: a review goes through it (or the test would prove nothing).
  webhook.release();
  const before = webhook.seen;
  t.equal((await review(api, 10_000)).status, 201, 'a review answered through the webhook');
  t.equal(webhook.seen, before + 1, 'the webhook was asked');

  await t.test('the deadline counts the wait for a place', async (t) => {
    webhook.hold();
    const seen = webhook.seen;
    const started = performance.now();
    const holding = Array.from({ length: places }, () => outcome(review(api, 4_000), started));
    await eventually('every place taken at the API server', 10, async () => webhook.seen === seen + places);
    const waitingSince = performance.now();
    const waiting = await Promise.all(Array.from({ length: 4 }, () => outcome(review(api, 1_500), waitingSince)));
    for (const w of waiting) {
      t.type(w.error, KubeApiTimeoutError, 'a request whose deadline passed in line');
      t.ok(w.ms < 3_000, `gave up at its own deadline (1.5 s), not 1.5 s after a place came free at 4 s: ${w.ms.toFixed(0)} ms`);
      // All of it spent in line: the deadline's 1.5 s, give or take the timer's lateness on a busy machine.
      t.match(w.error?.message, /no answer within 1\.5 s \((1\.[5-9]|2\.\d) s of it waiting for a place in the reviews lane\)/);
    }
    for (const h of await Promise.all(holding)) t.type(h.error, KubeApiTimeoutError, 'the ones at the API server time out too');
    t.equal(webhook.seen, seen + places, 'the expired requests were never sent');
    webhook.release();
  });

  await t.test('a full line is refused at once, and nothing in it is lost', async (t) => {
    webhook.hold();
    const seen = webhook.seen;
    const asked = api.requests.get('tokenreview') ?? 0;
    const started = performance.now();
    const all = Array.from({ length: places + line }, () => outcome(review(api, 60_000), started));
    await eventually('every place taken at the API server', 10, async () => webhook.seen === seen + places);
    const refused = await within(review(api, 60_000), 5_000);
    t.not(refused, 'pending', 'answered while every review before it is still held');
    if (refused !== 'pending') {
      t.type(refused.error, KubeApiBusyError);
      t.match(refused.error?.message, /busy: 256 requests already wait in the reviews lane/);
    }
    // The access layer's count of reviews asked (nodeprep_kube_reviews_total) is of reviews sent.
    const counted: string[] = [];
    const reviews = new Reviews(api, 60_000, { asked: (kind) => counted.push(kind), cached: () => {} });
    const viaReviews = await within(reviews.tokenReview(`refused-in-line-${process.pid}`, ['nodeprep']), 5_000);
    t.type(viaReviews !== 'pending' && viaReviews.error, KubeApiBusyError, 'a TokenReview of the access layer finds the line full');
    t.same(counted, [], 'and is not counted as asked of the API server');
    webhook.release();
    const answers = await Promise.all(all);
    t.same(answers.filter((a) => a.value?.status !== 201).map((a) => a.error?.message), [], `all ${places + line} in line answered once let go`);
    t.equal((api.requests.get('tokenreview') ?? 0) - asked, places + line, 'counted: the ones sent, not the refused one');
    await reviews.tokenReview(`sent-${process.pid}`, ['nodeprep']).catch(() => undefined);
    t.same(counted, ['tokenreview'], 'a TokenReview that was sent is counted as asked');
  });

  await t.test('a flood of reviews holds up neither the view\'s lists nor its watches', async (t) => {
    const informer = new Supervised(api, { name: 'configmaps', path: '/api/v1/namespaces/watched/configmaps', slim: slimConfigMap }, { log: pino({ level: 'silent' }), onChange: () => {} });
    t.teardown(() => informer.stop());
    webhook.hold();
    const seen = webhook.seen;
    const flood = Array.from({ length: places + line }, () => outcome(review(api, 60_000), performance.now()));
    await eventually('every place taken at the API server', 10, async () => webhook.seen === seen + places);
    // A list as the Illumio checks make it: kind 'list' and no lane named goes to the view's.
    const list = await within(api.call<{ items: unknown[] }>('GET', '/api/v1/pods?limit=500', undefined, { kind: 'list' }), 10_000);
    t.not(list, 'pending', 'a list is answered while the reviews lane is full');
    if (list !== 'pending') t.same(list.error, undefined);
    informer.start();
    await eventually('the informer listed and watches', 10, async () => informer.state === 'synced');
    await server.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'seen-during-the-flood', namespace: 'watched' } });
    await eventually('the watch delivers a change while the reviews lane is full', 10, async () => informer.cache.list().some((c) => c.name === 'seen-during-the-flood'));
    t.equal(webhook.seen, seen + places, 'and the reviews were all still held');
    webhook.release();
    await Promise.all(flood);
  });

  await t.test('the line full: a reader and an agent get 503 with Retry-After at once', async (t) => {
    // An aggregator of its own (its own lanes), reviewing through the same API server.
    const appAccess = loadClusterAccess({ KUBECONFIG: server.adminKubeconfig, HOME: dir }, 'auto');
    if (!('api' in appAccess)) throw new Error(appAccess.off);
    const app = await buildApp({
      config: { ttlSeconds: 60, dropAfterSeconds: 3600, logLevel: 'silent', illumioChainPatterns: 'illumio*', agentServiceAccount: 'nodeprep/nodeprep-agent' },
      logger: createLogger('silent'),
      sweep: false,
      cluster: appAccess,
    });
    t.teardown(() => app.close());
    await app.ready();
    webhook.hold();
    const seen = webhook.seen;
    const flood = Array.from({ length: places + line }, () => outcome(review(appAccess.api, 60_000), performance.now()));
    await eventually('every place taken at the API server', 10, async () => webhook.seen === seen + places);
    // The engine hears of an agent turned away (NODE_NO_AGENT then waits its grace again); not of a reader.
    let turnedAway = 0;
    const engine = app.engine as { agentTurnedAway: () => void };
    const agentTurnedAway = engine.agentTurnedAway.bind(engine);
    engine.agentTurnedAway = () => {
      turnedAway++;
      agentTurnedAway();
    };
    const read = await within(app.inject({ method: 'GET', url: '/v1/findings', headers: { authorization: `Bearer opaque-reader-${process.pid}` } }), 8_000);
    t.equal(turnedAway, 0, 'a reader turned away is not an agent');
    const report = await within(app.inject({ method: 'POST', url: '/v1/reports', headers: { authorization: `Bearer opaque-agent-${process.pid}`, 'content-type': 'application/json' }, payload: '{}' }), 8_000);
    // Before any review's deadline (60 s) and before the 10 s of its own: refused in line, not timed out.
    t.equal(webhook.seen, seen + places, 'answered while every review before them is still held');
    for (const [what, res] of [['GET /v1/findings', read], ['POST /v1/reports', report]] as const) {
      t.not(res, 'pending', `${what} answered`);
      if (res === 'pending' || !res.value) continue;
      t.equal(res.value.statusCode, 503, `${what}: 503`);
      t.equal(res.value.headers['retry-after'], '5', `${what}: Retry-After`);
      t.match(res.value.json(), { statusCode: 503, message: /Kubernetes API client busy: 256 requests already wait in the reviews lane/ }, `${what}: says the line is full`);
    }
    t.equal(turnedAway, 1, 'the agent turned away is told to the engine');
    webhook.release();
    await Promise.all(flood);
  });
}

const why = requireKube();
if (why) t.plan(0, why);
else await run();
