// The sender against real HTTP(S) servers on loopback.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { backoffDelay, createSender, parseRetryAfter } from '../../agent/sender.js';
import type { NodeReport } from '../../protocol/report.js';
import { testCa } from '../support/tls.js';

const report = { schemaVersion: 2, node: { name: 'n1' } } as unknown as NodeReport;
const fast = { backoffBaseMs: 5, backoffMaxMs: 20, attemptTimeoutMs: 2_000 };

type Reply = { status: number; headers?: Record<string, string>; body?: string };
interface Seen { auth?: string; body: string }

async function server(t: Test, replies: Reply[], make: (h: http.RequestListener) => http.Server = (h) => http.createServer(h)) {
  const seen: Seen[] = [];
  const srv = make((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ auth: req.headers.authorization, body });
      const r = replies[Math.min(seen.length - 1, replies.length - 1)]!;
      res.writeHead(r.status, { 'content-type': 'application/json', ...r.headers });
      res.end(r.body ?? '{}');
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  return { port: (srv.address() as AddressInfo).port, seen };
}

t.test('retries 503 and 429, then delivers; the body is the report', async (t) => {
  const { port, seen } = await server(t, [{ status: 503 }, { status: 429, headers: { 'retry-after': '0' } }, { status: 202 }]);
  const sender = createSender({ url: `http://127.0.0.1:${port}`, ...fast });
  t.teardown(() => sender.close());
  const r = await sender.send(report);
  t.same(r, { outcome: 'delivered', status: 202, attempts: 3 });
  t.equal(seen.length, 3);
  t.same(JSON.parse(seen[2]!.body), report);
});

t.test('a 400 is final: no retry, and the reason is kept', async (t) => {
  const { port, seen } = await server(t, [{ status: 400, body: JSON.stringify({ message: 'body/node/name: Required' }) }]);
  const sender = createSender({ url: `http://127.0.0.1:${port}/`, ...fast });
  t.teardown(() => sender.close());
  t.same(await sender.send(report), { outcome: 'rejected', status: 400, message: 'body/node/name: Required', attempts: 1 });
  t.equal(seen.length, 1);
});

t.test('5xx every time: unreachable after the retries', async (t) => {
  const { port, seen } = await server(t, [{ status: 500 }]);
  const sender = createSender({ url: `http://127.0.0.1:${port}`, ...fast, retries: 2 });
  t.teardown(() => sender.close());
  const r = await sender.send(report);
  t.equal(r.outcome, 'unreachable');
  t.equal(seen.length, 3);
});

t.test('nobody listening: unreachable, with the connection error', async (t) => {
  // A port that was just free: listen, note it, close.
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const freePort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const sender = createSender({ url: `http://127.0.0.1:${freePort}`, ...fast, retries: 1 });
  t.teardown(() => sender.close());
  const r = await sender.send(report);
  t.equal(r.outcome, 'unreachable');
  t.match((r as { message: string }).message, /ECONNREFUSED/);
});

t.test('the bearer token is read from its file, and again when the file changes', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'first-token\n');
  const { port, seen } = await server(t, [{ status: 202 }]);
  const sender = createSender({ url: `http://127.0.0.1:${port}`, tokenFile, ...fast });
  t.teardown(() => sender.close());
  await sender.send(report);
  writeFileSync(tokenFile, 'second-token-longer\n');
  await sender.send(report);
  t.same(seen.map((s) => s.auth), ['Bearer first-token', 'Bearer second-token-longer']);
});

t.test('an aborted send stops at once', async (t) => {
  const { port } = await server(t, [{ status: 503 }]);
  const sender = createSender({ url: `http://127.0.0.1:${port}`, backoffBaseMs: 10_000, backoffMaxMs: 10_000 });
  t.teardown(() => sender.close());
  const stop = new AbortController();
  const pending = sender.send(report, stop.signal);
  setTimeout(() => stop.abort(), 50);
  t.equal((await pending).outcome, 'aborted');
});

/** An HTTPS server on loopback that counts connections: a refused certificate costs one each. */
async function httpsServer(t: Test, tls: { key: Buffer; cert: Buffer }) {
  const connections = { count: 0 };
  const { port, seen } = await server(t, [{ status: 202 }], (h) => {
    const srv = https.createServer(tls, h);
    // 'connection' comes with the TCP accept, before the client can have refused anything.
    srv.on('connection', () => connections.count++);
    return srv;
  });
  return { url: `https://127.0.0.1:${port}`, seen, connections };
}

t.test('https with a custom CA: trusted with --ca-file; without it, "untrusted" after one attempt', async (t) => {
  const ca = testCa(t);
  const { url, seen, connections } = await httpsServer(t, ca.server());
  const trusted = createSender({ url, caFile: ca.caFile, ...fast });
  const untrusted = createSender({ url, ...fast, retries: 3 });
  t.teardown(() => Promise.all([trusted.close(), untrusted.close()]));
  t.equal((await trusted.send(report)).outcome, 'delivered');
  t.equal(connections.count, 1);
  const r = await untrusted.send(report);
  t.match(r, { outcome: 'untrusted', reason: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', message: /certificate/i, attempts: 1 });
  t.equal(connections.count, 2, 'one attempt, no fast retries: retrying at once cannot fix a certificate');
  t.equal(seen.length, 1, 'only the trusted sender got through');
});

t.test('certificate problems are named: expired, wrong host', async (t) => {
  const ca = testCa(t);
  const cases = [
    { name: 'expired', tls: ca.server('IP:127.0.0.1', { expired: true }), reason: 'CERT_HAS_EXPIRED' },
    { name: 'issued for another address', tls: ca.server('IP:127.0.0.2'), reason: 'ERR_TLS_CERT_ALTNAME_INVALID' },
  ];
  for (const c of cases) {
    const { url, connections } = await httpsServer(t, c.tls);
    const sender = createSender({ url, caFile: ca.caFile, ...fast, retries: 3 });
    t.teardown(() => sender.close());
    t.match(await sender.send(report), { outcome: 'untrusted', reason: c.reason, attempts: 1 }, c.name);
    t.equal(connections.count, 1, `${c.name}: one attempt`);
  }
});

t.test('backoff and Retry-After arithmetic', async (t) => {
  t.equal(backoffDelay(0, 500, 15_000, () => 0.999), 499);
  t.equal(backoffDelay(3, 500, 15_000, () => 0.5), 2_000);
  t.equal(backoffDelay(10, 500, 15_000, () => 0.5), 7_500, 'capped');
  t.equal(parseRetryAfter('7'), 7_000);
  t.equal(parseRetryAfter(new Date(10_000 + 3_000).toUTCString(), 10_000), 3_000);
  t.equal(parseRetryAfter('soon'), undefined);
  t.equal(parseRetryAfter(undefined), undefined);
});
