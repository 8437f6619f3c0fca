// The HTTP API through app.inject(): every status code of design.md section 5, each refusal
// clear and without effect on the state.
import { Writable } from 'node:stream';
import t from 'tap';
import { buildApp, BODY_LIMIT, createLogger } from '../../aggregator/app.js';
import { SharedTokens, parseSharedTokens } from '../../aggregator/access/shared-tokens.js';
import { reportJsonSchema } from '../../aggregator/report-validation.js';
import { MAX_CLUSTER_NAME, MAX_NODE_NAME } from '../../protocol/names.js';
import { LIMITS, MAX_REPORT_BYTES, NodeReport } from '../../protocol/report.js';
import { PRINTABLE } from '../../protocol/text.js';
import { buildReport } from '../support/reports.js';

const TOKEN = 's3cret-token-value';
const config = { ttlSeconds: 60, dropAfterSeconds: 3600, logLevel: 'debug' as const, illumioChainPatterns: 'illumio*' };

async function setup(t: { teardown: (fn: () => unknown) => void }, options: { token?: string; level?: string } = {}) {
  const lines: string[] = [];
  const logger = createLogger(options.level ?? 'info', new Writable({ write(chunk, _e, done) { lines.push(String(chunk)); done(); } }) as never);
  const app = await buildApp({ config, logger, sweep: false, ...(options.token ? { shared: sharedTokens(options.token) } : {}) });
  t.teardown(() => app.close());
  const post = (payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/v1/reports',
      headers: { 'content-type': 'application/json', ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...headers },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
  const nodes = async () => (await app.inject('/v1/nodes')).json().nodes as { name: string }[];
  const metric = async (pattern: RegExp) => Number(pattern.exec((await app.inject('/metrics')).body)?.[1]);
  return { app, post, nodes, metric, lines };
}

t.test('POST /v1/reports: 202 with the node and its findings; state and metrics follow', async (t) => {
  const { app, post, nodes, metric } = await setup(t);
  const res = await post(buildReport({ name: 'n1', calico: 'insert' }));
  t.equal(res.statusCode, 202);
  const body = res.json();
  t.equal(body.node, 'n1');
  t.same(body.findings.map((f: { code: string }) => f.code), ['CALICO_INSERT_MODE']);
  t.same((await nodes()).map((n) => n.name), ['n1']);
  t.equal(await metric(/^nodeprep_reports_received_total (\d+)/m), 1);
  t.equal(await metric(/^nodeprep_nodes_known (\d+)/m), 1);
  t.equal(await metric(/^nodeprep_findings_active\{code="CALICO_INSERT_MODE",severity="warning"\} (\d+)/m), 1);
  t.equal(await metric(/^nodeprep_report_ingest_seconds_count (\d+)/m), 1);

  const detail = await app.inject('/v1/nodes/n1');
  t.equal(detail.statusCode, 200);
  t.match(detail.json(), { name: 'n1', stale: false, calicoMode: 'insert', report: { node: { name: 'n1' } }, activeFindings: [{ code: 'CALICO_INSERT_MODE' }] });
});

t.test('refusals: status, a message naming the problem, a reason in metrics, no state change', async (t) => {
  const { post, nodes, metric } = await setup(t, { token: TOKEN });
  await post(buildReport({ name: 'kept' }));
  const valid = buildReport({ name: 'other' });
  const tooManyRules = buildReport({ name: 'other' });
  // 20 chains of 60 rules: each chain within its limit, the report over rulesPerReport.
  tooManyRules.iptables = tooManyRules.iptables.map((set) => ({
    ...set,
    tables: set.tables.map((table) => ({ ...table, builtinChains: table.builtinChains.map((c) => ({ ...c, ruleCount: 60, rules: Array.from({ length: 60 }, () => ({ target: 'ACCEPT' })) })) })),
  }));

  const cases: { name: string; send: () => ReturnType<typeof post>; status: number; message: RegExp; path?: string; reason: string }[] = [
    { name: 'malformed JSON', send: () => post('{"schemaVersion":2,'), status: 400, message: /not valid JSON/, reason: 'invalid_json' },
    { name: 'empty body', send: () => post(''), status: 400, message: /JSON/, reason: 'invalid_json' },
    { name: 'wrong type', send: () => post({ ...valid, node: { name: 42 } }), status: 400, message: /^body\.node\.name: /, path: 'node.name', reason: 'invalid_report' },
    { name: 'missing field', send: () => post({ ...valid, machineId: undefined }), status: 400, message: /^body\.machineId: required/, path: 'machineId', reason: 'invalid_report' },
    { name: 'unknown top-level field', send: () => post({ ...valid, extra: true }), status: 400, message: /^body\.extra: unknown field/, path: 'extra', reason: 'invalid_report' },
    {
      name: 'unknown nested field',
      send: () => post({ ...valid, illumio: { ...valid.illumio, cven: true } }),
      status: 400, message: /^body\.illumio\.cven: unknown field/, path: 'illumio.cven', reason: 'invalid_report',
    },
    { name: 'a string where a number is due is not coerced', send: () => post({ ...valid, schemaVersion: '1' }), status: 400, message: /schemaVersion/, path: 'schemaVersion', reason: 'invalid_report' },
    { name: 'bad date', send: () => post({ ...valid, collectedAt: 'yesterday' }), status: 400, message: /^body\.collectedAt: /, path: 'collectedAt', reason: 'invalid_report' },
    { name: 'name too long', send: () => post({ ...valid, node: { name: 'x'.repeat(LIMITS.name + 1) } }), status: 400, message: /^body\.node\.name: /, reason: 'invalid_report' },
    { name: 'over the per-report rule total', send: () => post(tooManyRules), status: 400, message: new RegExp(`^body\\.iptables: at most ${LIMITS.rulesPerReport} built-in chain rules`), path: 'iptables', reason: 'invalid_report' },
    { name: 'schema version from the future', send: () => post({ ...valid, schemaVersion: 3 }), status: 400, message: /schemaVersion.*unsupported schema version 3.*upgrade the aggregator/, path: 'schemaVersion', reason: 'schema_version' },
    { name: 'oversized body', send: () => post(JSON.stringify({ ...valid, pad: 'x'.repeat(BODY_LIMIT) })), status: 413, message: /too large/i, reason: 'too_large' },
    { name: 'no token', send: () => post(valid, { authorization: '' }), status: 401, message: /bearer token/, reason: 'unauthorized' },
    { name: 'wrong token', send: () => post(valid, { authorization: `Bearer ${TOKEN}x` }), status: 401, message: /bearer token/, reason: 'unauthorized' },
    { name: 'token without the Bearer scheme', send: () => post(valid, { authorization: TOKEN }), status: 401, message: /bearer token/, reason: 'unauthorized' },
    { name: 'not JSON', send: () => post('x', { 'content-type': 'text/plain' }), status: 415, message: /application\/json/, reason: 'unsupported_media_type' },
  ];
  for (const c of cases) {
    const before = await metric(new RegExp(`^nodeprep_reports_rejected_total\\{reason="${c.reason}"\\} (\\d+)`, 'm'));
    const res = await c.send();
    t.equal(res.statusCode, c.status, `${c.name}: status`);
    const body = res.json();
    t.match(body, { statusCode: c.status, error: String, message: c.message }, `${c.name}: message ${body.message}`);
    if (c.path) t.equal(body.issues?.[0]?.path, c.path, `${c.name}: issue path`);
    t.equal(await metric(new RegExp(`^nodeprep_reports_rejected_total\\{reason="${c.reason}"\\} (\\d+)`, 'm')), before + 1, `${c.name}: counted as ${c.reason}`);
    if (c.status === 401) t.equal(res.headers['www-authenticate'], 'Bearer');
  }
  t.same((await nodes()).map((n) => n.name), ['kept'], 'no refused report changed the state');
  t.equal(await metric(/^nodeprep_reports_received_total (\d+)/m), 1);
  t.ok(BODY_LIMIT > MAX_REPORT_BYTES, 'the largest valid report fits');
});

t.test('the token never reaches a log line, even at debug', async (t) => {
  const { post, lines } = await setup(t, { token: TOKEN, level: 'trace' });
  await post(buildReport());
  await post(buildReport(), { authorization: `Bearer ${TOKEN}-wrong` });
  await post('{', {});
  t.ok(lines.length > 0, 'debug logging happened');
  t.notOk(lines.join('').includes(TOKEN), 'no token in the logs');
  t.notOk(lines.join('').includes('KUBE-SERVICES'), 'no report content in the logs');
});

t.test('alerts: logged on transitions only, nothing per report in steady state', async (t) => {
  const { post, lines } = await setup(t);
  const shared = 'ffffffffffffffffffffffffffffffff';
  await post(buildReport({ name: 'a', machineId: shared }));
  await post(buildReport({ name: 'b', machineId: shared }));
  const afterRaise = lines.length;
  for (let i = 0; i < 5; i++) {
    await post(buildReport({ name: 'a', machineId: shared }));
    await post(buildReport({ name: 'b', machineId: shared }));
  }
  t.equal(lines.length, afterRaise, 'steady state logs nothing');
  await post(buildReport({ name: 'b' }));
  const alerts = lines.map((l) => JSON.parse(l)).filter((l) => /^finding /.test(l.msg));
  t.match(alerts, [
    { msg: 'finding raised', code: 'MACHINE_ID_DUPLICATE', severity: 'critical', nodes: ['a', 'b'], id: /^[0-9a-f]{16}$/ },
    { msg: 'finding resolved', code: 'MACHINE_ID_DUPLICATE', nodes: ['a', 'b'] },
  ]);
  t.equal(alerts.length, 2);
  t.equal(alerts[0].id, alerts[1].id);
});

t.test('GET routes', async (t) => {
  const { app, post } = await setup(t);
  await post(buildReport({ name: 'a', calico: 'insert' }));
  await post(buildReport({ name: 'b', calico: 'none' }, { illumio: { hostDataDir: true, serverVen: true } }));

  const all = await app.inject('/v1/findings');
  t.equal(all.statusCode, 200);
  t.same(all.json().findings.map((f: { code: string }) => f.code), ['ILLUMIO_SERVER_VEN', 'CALICO_INSERT_MODE']);
  const filtered = [
    ['?severity=critical', ['ILLUMIO_SERVER_VEN']],
    ['?code=CALICO_INSERT_MODE', ['CALICO_INSERT_MODE']],
    ['?node=a', ['CALICO_INSERT_MODE']],
    ['?node=a&severity=critical', []],
    ['?node=nobody', []],
  ] as const;
  for (const [query, expected] of filtered) {
    const res = await app.inject(`/v1/findings${query}`);
    t.same(res.json().findings.map((f: { code: string }) => f.code), expected, query);
  }
  for (const query of ['?severity=fatal', '?code=NOPE', '?colour=red']) {
    const res = await app.inject(`/v1/findings${query}`);
    t.equal(res.statusCode, 400, query);
    t.match(res.json().message, /^querystring\.(severity|code|colour)/, `${query}: names the parameter`);
  }
  const finding = all.json().findings[0];
  t.match(finding, { id: String, code: String, severity: String, nodes: ['b'], message: String, remediation: String, evidence: Object, since: String });

  t.equal((await app.inject('/v1/nodes/nobody')).statusCode, 404);
  t.match((await app.inject('/v1/nodes/nobody')).json(), { statusCode: 404, message: /nobody/ });
  t.equal((await app.inject('/no/such/route')).statusCode, 404);
  t.same((await app.inject('/healthz')).json(), { status: 'ok' });
  t.same((await app.inject('/readyz')).json(), { status: 'ready', clusterView: { state: 'off', reason: 'no cluster configured' } });
  const metrics = await app.inject('/metrics');
  t.match(metrics.headers['content-type'], /text\/plain/);
  for (const name of ['nodeprep_reports_received_total', 'nodeprep_reports_rejected_total', 'nodeprep_nodes_known', 'nodeprep_nodes_stale', 'nodeprep_findings_active', 'nodeprep_report_ingest_seconds_bucket']) {
    t.match(metrics.body, new RegExp(`^${name}`, 'm'), name);
  }
});

t.test('several clusters, one aggregator: the same node name in two clusters is two nodes', async (t) => {
  const { app, post } = await setup(t);
  const machineId = '0123456789abcdef0123456789abcdef';
  t.equal((await post(buildReport({ name: 'worker-1', cluster: 'eu', machineId, calico: 'insert' }))).statusCode, 202);
  const second = await post(buildReport({ name: 'worker-1', cluster: 'us', machineId, calico: 'append' }));
  t.equal(second.json().node, 'us/worker-1');
  t.same((await app.inject('/v1/nodes')).json().nodes.map((n: { name: string }) => n.name).sort(), ['eu/worker-1', 'us/worker-1']);
  const one = await app.inject('/v1/nodes/eu%2Fworker-1');
  t.equal(one.statusCode, 200);
  t.equal(one.json().report.node.cluster, 'eu');
  const findings = (await app.inject('/v1/findings')).json().findings as { code: string; nodes: string[] }[];
  t.same(findings.find((f) => f.code === 'MACHINE_ID_DUPLICATE')?.nodes.sort(), ['eu/worker-1', 'us/worker-1'], 'a cloned image across clusters is still a duplicate');
  t.same(findings.find((f) => f.code === 'CALICO_INSERT_MODE')?.nodes, ['eu/worker-1']);
  t.notOk(findings.some((f) => f.code === 'CALICO_MODE_MIXED'), 'modes are compared within a cluster');
});

t.test('GET /openapi.json describes every route from the route schemas', async (t) => {
  const { app } = await setup(t);
  const doc = (await app.inject('/openapi.json')).json();
  for (const path of ['/v1/reports', '/v1/nodes', '/v1/nodes/{name}', '/v1/findings', '/healthz', '/readyz', '/metrics']) t.ok(doc.paths[path], path);
  t.notOk(doc.paths['/openapi.json'], 'hidden');
  const body = doc.paths['/v1/reports'].post.requestBody.content['application/json'].schema;
  t.equal(body.additionalProperties, false, 'unknown report fields are refused, as documented');
  t.ok(body.properties.machineId && body.properties.iptables, 'the NodeReport schema');
  t.same(doc.paths['/v1/findings'].get.parameters.map((p: { name: string }) => p.name).sort(), ['code', 'continue', 'limit', 'node', 'severity']);
});

t.test('NODE_STALE through the API with an injected clock', async (t) => {
  let now = Date.parse('2025-01-01T00:00:00Z');
  const app = await buildApp({ config: { ...config, ttlSeconds: 1.5 }, logger: createLogger('silent'), sweep: false, now: () => now });
  t.teardown(() => app.close());
  await app.inject({ method: 'POST', url: '/v1/reports', payload: buildReport({ name: 'quiet' }) });
  now += 2000;
  app.engine.sweep();
  const res = await app.inject('/v1/findings?code=NODE_STALE');
  t.match(res.json().findings, [{ code: 'NODE_STALE', nodes: ['quiet'] }]);
  t.match((await app.inject('/v1/nodes')).json().nodes, [{ name: 'quiet', stale: true }]);
});

t.test('control characters and lone surrogates: the pattern survives the JSON Schema and ajv refuses them', async (t) => {
  // Each would be a six-byte escape in JSON: allowed, they would break the report size bound.
  const schema = JSON.stringify(reportJsonSchema());
  t.ok(schema.includes(JSON.stringify(PRINTABLE.source)), 'the generated JSON Schema carries the pattern');
  const { post, nodes } = await setup(t, { token: TOKEN });
  const rule = /control characters.*unpaired surrogates/;
  const cases: [string, (r: NodeReport) => void, string, RegExp][] = [
    ['a NUL in an error message', (r) => (r.errors = [{ source: 'nft', message: 'a\u0000b' }]), 'errors.0.message', rule],
    ['a newline in a rule comment', (r) => (r.iptables[0]!.tables[0]!.builtinChains[0]!.rules[0] = { target: 'X', comment: 'two\nlines' }), 'iptables.0.tables.0.builtinChains.0.rules.0.comment', rule],
    ['DEL in the agent version', (r) => (r.agent.version = '1.0\u007f'), 'agent.version', rule],
    ['a lone surrogate in a chain name', (r) => (r.iptables[0]!.tables[0]!.userChains.names[0] = 'cali-\ud800'), 'iptables.0.tables.0.userChains.names.0', rule],
    ['a control character in a chain family (a key)', (r) => (r.iptables[0]!.tables[0]!.userChains.families = { 'KUBE-\u0001': 1 }), 'iptables.0.tables.0.userChains.families.KUBE-\u0001', /printable ASCII/],
  ];
  for (const [name, spoil, path, message] of cases) {
    const report = structuredClone(buildReport({ name: 'spoilt' })); // buildReport shares its rules
    spoil(report);
    const res = await post(report); // JSON.stringify writes them as \u escapes, as an agent would
    t.equal(res.statusCode, 400, `${name}: 400`);
    t.match(res.json().issues, [{ path, message }], `${name}: the field and why`);
  }
  const paired = buildReport({ name: 'paired' });
  paired.errors = [{ source: 'nft', message: 'a well-formed pair \ud834\udd1e is fine' }];
  t.equal((await post(paired)).statusCode, 202);
  t.same((await nodes()).map((n) => n.name), ['paired'], 'no refused report was kept');
});

t.test('a 400 lists every problem, not only the first', async (t) => {
  const { post } = await setup(t);
  const report = buildReport({ name: 'many-problems' });
  const bad = { ...report, extra: 1, collectedAt: 'yesterday', illumio: { hostDataDir: 'yes', serverVen: false } };
  const res = await post(bad);
  t.equal(res.statusCode, 400);
  const paths = (res.json().issues as { path: string }[]).map((i) => i.path);
  for (const path of ['extra', 'collectedAt', 'illumio.hostDataDir']) t.ok(paths.includes(path), `${path} is listed`);
  t.match(res.json().message, /\(and \d+ more problems\)/);
});

t.test('a heartbeat is known by its bytes: the node refreshed, collectedAt checked, the sender still authorized', async (t) => {
  let now = Date.parse('2025-01-01T00:00:00Z');
  const tokens = new SharedTokens();
  tokens.replace(parseSharedTokens(`eu-token eu\nus-token us\n`, ''));
  const app = await buildApp({ config: { ...config, ttlSeconds: 60 }, logger: createLogger('silent'), sweep: false, now: () => now, shared: tokens });
  t.teardown(() => app.close());
  const post = (body: string, token = 'eu-token') => app.inject({ method: 'POST', url: '/v1/reports', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, payload: body });
  const report = buildReport({ name: 'w1', cluster: 'eu', calico: 'insert' });
  const at = (iso: string) => JSON.stringify({ ...report, collectedAt: iso });
  const detail = async () => (await app.inject('/v1/nodes/eu%2Fw1')).json();

  t.equal((await post(at('2025-01-01T00:00:00.000Z'))).statusCode, 202);
  now += 30_000;
  const beat = await post(at('2025-01-01T00:00:30.000Z'));
  t.equal(beat.statusCode, 202);
  t.match(beat.json(), { node: 'eu/w1', findings: [{ code: 'CALICO_INSERT_MODE' }] }, 'the answer carries the node\'s findings, as for any report');
  t.match(await detail(), { lastSeen: '2025-01-01T00:00:30.000Z', report: { collectedAt: '2025-01-01T00:00:30.000Z' } }, 'fresh, with the new collectedAt');

  const badDate = await post(at('2025-13-01T00:00:00.000Z'));
  t.equal(badDate.statusCode, 400, 'the same facts with an impossible collectedAt are no heartbeat');
  t.match(badDate.json(), { issues: [{ path: 'collectedAt' }] });
  const otherCluster = await post(at('2025-01-01T00:00:40.000Z'), 'us-token');
  t.equal(otherCluster.statusCode, 403, 'a heartbeat is authorized like any report: a token of cluster us may not speak for eu/w1');
  t.match(await detail(), { report: { collectedAt: '2025-01-01T00:00:30.000Z' } }, 'and neither refusal changed the node');

  // The same facts, the keys in another order: not known by bytes, taken in full, still one node.
  const { node, ...rest } = report;
  t.equal((await post(JSON.stringify({ node, ...rest, collectedAt: '2025-01-01T00:00:50.000Z' }))).statusCode, 202);
  t.equal((await app.inject('/v1/nodes')).json().nodes.length, 1);

  // A stale node's heartbeat is analysed again: NODE_STALE resolved, its findings back.
  now += 120_000;
  app.engine.sweep();
  t.match(await detail(), { stale: true });
  const back = await post(at('2025-01-01T00:03:00.000Z'));
  t.equal(back.statusCode, 202);
  t.same(back.json().findings.map((f: { code: string }) => f.code), ['CALICO_INSERT_MODE']);
  t.match(await detail(), { stale: false, lastSeen: new Date(now).toISOString() });
});

t.test('string limits count UTF-16 code units, in ajv as in zod', async (t) => {
  const { post } = await setup(t);
  // 33 characters outside the Basic Multilingual Plane: 33 code points, 66 code units; the limit is 64.
  const report = buildReport({ name: 'clef' }, { agent: { version: '\u{1D11E}'.repeat(33) } });
  t.notOk(NodeReport.safeParse(report).success, 'zod refuses it');
  const res = await post(report);
  t.equal(res.statusCode, 400, 'and so does the aggregator');
  t.match(res.json().issues, [{ path: 'agent.version' }]);
  t.equal((await post(buildReport({ name: 'clef' }, { agent: { version: '\u{1D11E}'.repeat(32) } }))).statusCode, 202, '64 code units pass');
});

t.test('the Bearer scheme is case-insensitive (RFC 7235)', async (t) => {
  const { post } = await setup(t, { token: TOKEN });
  for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
    t.equal((await post(buildReport(), { authorization: `${scheme} ${TOKEN}` })).statusCode, 202, scheme);
  }
  t.equal((await post(buildReport(), { authorization: `Bearer   ${TOKEN}` })).statusCode, 202, 'several spaces');
  for (const wrong of [`Basic ${TOKEN}`, `Bearer${TOKEN}`, `Bearer ${TOKEN.toUpperCase()}`]) {
    t.equal((await post(buildReport(), { authorization: wrong })).statusCode, 401, wrong);
  }
});

t.test('GET /v1/nodes/:name reads back the longest node key, <cluster>/<node>', async (t) => {
  const { app, post } = await setup(t);
  const cluster = 'c'.repeat(MAX_CLUSTER_NAME);
  const name = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
  t.equal(name.length, MAX_NODE_NAME);
  t.equal((await post(buildReport({ name, cluster }))).statusCode, 202);
  const res = await app.inject(`/v1/nodes/${encodeURIComponent(`${cluster}/${name}`)}`);
  t.equal(res.statusCode, 200, 'not 414');
  t.equal(res.json().name, `${cluster}/${name}`);
  t.equal((await app.inject(`/v1/findings?node=${encodeURIComponent(`${cluster}/${name}`)}`)).statusCode, 200, 'the same key as a filter');
});

function sharedTokens(token: string): SharedTokens {
  const tokens = new SharedTokens();
  tokens.replace(parseSharedTokens(`${token}\n`, ''));
  return tokens;
}
