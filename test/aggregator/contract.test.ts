// The published contract (GET /openapi.json) against what the routes do (issue 20, item 9): each
// mismatch an independent fuzzer found, checked here one by one through app.inject(). The fuzzer
// itself runs against a real aggregator process in test/contract/schemathesis.test.ts.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { buildApp, createLogger } from '../../aggregator/app.js';
import { SharedTokens, parseSharedTokens } from '../../aggregator/access/shared-tokens.js';
import { buildReport } from '../support/reports.js';

const config = { ttlSeconds: 60, dropAfterSeconds: 3600, logLevel: 'silent' as const, illumioChainPatterns: 'illumio*' };

async function setup(t: { teardown: (fn: () => unknown) => void }, token?: string) {
  let shared: SharedTokens | undefined;
  if (token) {
    shared = new SharedTokens();
    shared.replace(parseSharedTokens(`${token}\n`, ''));
  }
  const app = await buildApp({ config, logger: createLogger('silent'), sweep: false, ...(shared ? { shared } : {}) });
  t.teardown(() => app.close());
  const doc = (await app.inject('/openapi.json')).json() as OpenApi;
  return { app, doc };
}

interface Operation {
  security?: unknown[];
  responses: Record<string, { content?: Record<string, { schema?: Record<string, unknown> }> }>;
  requestBody?: { content: Record<string, { schema: Schema }> };
}
interface Schema {
  properties?: Record<string, Schema>;
  pattern?: string;
}
interface OpenApi {
  paths: Record<string, Record<string, Operation>>;
}

t.test('/metrics and values.yaml are documented with the types they are sent as', async (t) => {
  const { app, doc } = await setup(t);
  const cases = [
    ['/metrics', 'text/plain'],
    ['/v1/illumio/values.yaml', 'text/yaml'],
  ] as const;
  for (const [path, type] of cases) {
    const documented = Object.keys(doc.paths[path]!.get!.responses['200']!.content ?? {});
    t.same(documented, [type], `${path}: documented as ${type} only`);
    const res = await app.inject(path);
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], new RegExp(`^${type}`), `${path}: sent as ${type}`);
  }
});

t.test('the printable-text rule is in the published schema, read alike by ECMAScript and Python', async (t) => {
  const { app, doc } = await setup(t);
  const report = doc.paths['/v1/reports']!.post!.requestBody!.content['application/json']!.schema;
  const pattern = report.properties?.agent?.properties?.version?.pattern;
  t.type(pattern, 'string', 'agent.version carries a pattern');
  if (typeof pattern !== 'string') return;
  const samples: [string, boolean][] = [
    ['1.2.3', true],
    ['v1 é ü 中 \u{1f600} \u{10ffff}', true],
    ['', true],
    ['1.0\u007f', false],
    ['a\u0000b', false],
    ['tab\there', false],
    ['lone \ud800 surrogate', false],
    ['C1 \u0085 is printable here', true],
  ];
  // Rust's regex crate (Schemathesis validates patterns with it) refuses a pattern that names a
  // surrogate, escaped or not; a pair standing for one code point above U+FFFF is fine.
  t.notMatch(pattern, /\\u\{?[dD][89a-fA-F]|[\ud800-\udfff]/u, 'the pattern names no surrogate');
  const js = new RegExp(pattern, 'u');
  for (const [text, ok] of samples) t.equal(js.test(text), ok, `ECMAScript: ${JSON.stringify(text)} ${ok ? 'matches' : 'does not match'}`);
  // Python's re reads the same source (no \u{...} escapes, no surrogates named): what a
  // validator in another language (Schemathesis's) sees. Lone surrogates cannot cross into
  // Python's UTF-8 argv, so that sample stays with ECMAScript.
  const crossing = samples.filter(([text]) => !/[\ud800-\udfff]/u.test(text));
  const py = spawnSync('python3', ['-c', 'import json,re,sys; p,xs=json.loads(sys.stdin.read()); print(json.dumps([re.search(p,x) is not None for x in xs]))'], {
    input: JSON.stringify([pattern, crossing.map(([text]) => text)]),
    encoding: 'utf8',
  });
  t.equal(py.status, 0, `python3 ran: ${py.stderr}`);
  if (py.status === 0) t.same(JSON.parse(py.stdout), crossing.map(([, ok]) => ok), 'Python: the same answers');
  // And the aggregator refuses what the pattern refuses, with the field named.
  const spoilt = structuredClone(buildReport({ name: 'spoilt' }));
  spoilt.agent.version = '1.0\u007f';
  const res = await app.inject({ method: 'POST', url: '/v1/reports', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(spoilt) });
  t.equal(res.statusCode, 400);
  t.match(res.json().issues, [{ path: 'agent.version' }]);
});

t.test('the report example the contract shows is a report the aggregator takes', async (t) => {
  const { app, doc } = await setup(t);
  const media = doc.paths['/v1/reports']!.post!.requestBody!.content['application/json']! as { schema: Schema & { description?: string }; example?: unknown };
  t.type(media.example, 'object', 'an example (@fastify/swagger moves a schema\'s examples to the media type)');
  t.match(media.schema.description, /384 built-in chain rules, 256 user chain names, 16 nft base chains; and 20 chain families in a table/, 'the totals JSON Schema cannot say, said');
  const res = await app.inject({ method: 'POST', url: '/v1/reports', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(media.example) });
  t.equal(res.statusCode, 202, 'taken');
  t.equal(res.json().node, 'worker-1');
});

t.test('a long node name is the documented 400 naming params.name, never 414', async (t) => {
  const { app, doc } = await setup(t);
  t.ok(doc.paths['/v1/nodes/{name}']!.get!.responses['400'], '400 is documented');
  t.notOk(doc.paths['/v1/nodes/{name}']!.get!.responses['414'], '414 is not');
  // Up to Node's request-head limit (16 KiB), percent-encoded and not.
  for (const name of ['x'.repeat(400), encodeURIComponent('\u00e9').repeat(1200), '%2F'.repeat(5000)]) {
    const res = await app.inject(`/v1/nodes/${name}`);
    t.equal(res.statusCode, 400, `${name.length} characters: 400`);
    t.match(res.json().message, /^params\.name/, 'names the parameter');
  }
});

t.test('continue tokens are positions: a made-up one is served, one of another form is a 400', async (t) => {
  const { app, doc } = await setup(t);
  const param = (doc.paths['/v1/findings']!.get! as unknown as { parameters: { name: string; schema: Schema }[] }).parameters.find((p) => p.name === 'continue');
  t.equal(param?.schema.pattern, '^[A-Za-z0-9_-]*$', 'the token\'s form is published');
  for (const name of ['a', 'b', 'c', 'd']) {
    await app.inject({ method: 'POST', url: '/v1/reports', payload: buildReport({ name, calico: 'insert' }) });
  }
  for (const list of ['/v1/nodes', '/v1/findings']) {
    const field = list === '/v1/nodes' ? 'nodes' : 'findings';
    const all = (await app.inject(list)).json()[field] as unknown[];
    t.ok(all.length >= 4, `${list}: something to page through`);
    const walked: unknown[] = [];
    let token: string | undefined;
    do {
      const page = (await app.inject(`${list}?limit=1${token ? `&continue=${token}` : ''}`)).json();
      walked.push(...page[field]);
      token = page.continue;
    } while (token !== undefined);
    t.same(walked, all, `${list}: pages of one give the whole list once, in order`);
    // Kubernetes answers 410 for an expired token; a position cannot expire.
    const madeUp = await app.inject(`${list}?continue=${Buffer.from('zzz').toString('base64url')}`);
    t.equal(madeUp.statusCode, 200, `${list}: a made-up token of the published form is a position`);
    t.same(madeUp.json()[field], [], `${list}: past the end, nothing`);
    const other = await app.inject(`${list}?continue=not%20a%20token!`);
    t.equal(other.statusCode, 400, `${list}: another form is a 400`);
    t.match(other.json().message, /^querystring\.continue/, 'naming the parameter');
  }
});

t.test('a path served under other methods answers 405 with Allow; an unknown path 404', async (t) => {
  const { app } = await setup(t);
  const cases = [
    ['DELETE', '/v1/findings', 'GET, HEAD'],
    ['POST', '/v1/nodes/a', 'GET, HEAD'],
    ['GET', '/v1/reports', 'POST'],
    ['PUT', '/metrics', 'GET, HEAD'],
  ] as const;
  for (const [method, url, allow] of cases) {
    const res = await app.inject({ method, url, headers: { 'content-type': 'text/plain' }, payload: 'x' });
    t.equal(res.statusCode, 405, `${method} ${url}: 405`);
    t.equal(res.headers.allow, allow, `${method} ${url}: Allow: ${allow}`);
    t.match(res.json(), { statusCode: 405, message: new RegExp(`method ${method} is not allowed here`) });
  }
  t.equal((await app.inject({ method: 'DELETE', url: '/no/such/path' })).statusCode, 404);
});

t.test('the bearer token and its refusals are documented where they are checked', async (t) => {
  await t.test('local mode: nobody is checked, nothing is documented', async (t) => {
    const { doc } = await setup(t);
    const reports = doc.paths['/v1/reports']!.post!;
    t.notOk(reports.security, 'no security on POST /v1/reports');
    t.notOk(reports.responses['401'], 'no 401');
    t.notOk(doc.paths['/v1/findings']!.get!.security, 'no security on GET /v1/findings');
  });
  await t.test('shared agent tokens: POST /v1/reports says so; the readers are still open', async (t) => {
    const { app, doc } = await setup(t, 'a-shared-token-of-some-length');
    const reports = doc.paths['/v1/reports']!.post!;
    t.same(reports.security, [{ bearer: [] }], 'bearer on POST /v1/reports');
    for (const status of ['401', '403', '503']) t.ok(reports.responses[status], `${status} documented`);
    t.notOk(doc.paths['/v1/findings']!.get!.security, 'readers are not checked here: no security on GET /v1/findings');
    t.notOk(doc.paths['/healthz']!.get!.security, 'open routes: none');
    const unauthorized = await app.inject({ method: 'POST', url: '/v1/reports', payload: buildReport({ name: 'x' }) });
    t.equal(unauthorized.statusCode, 401, 'and a report without the token is the documented 401');
  });
});
