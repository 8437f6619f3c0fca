// The built `nodeprep-agent run` as a process, against HTTP servers on loopback.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import type { NodeReport } from '../../protocol/report.js';
import { AGENT_BIN, HOST_FIXTURES, IPTABLES_FIXTURES } from '../support/fixtures.js';

const dump = `ipv4/nft=${path.join(IPTABLES_FIXTURES, 'calico-insert.v4.nft.txt')}`;
const base = ['--node-name', 'n1', '--host-root', path.join(HOST_FIXTURES, 'unique'), '--from-dump', dump];

/** Runs the agent without blocking this process, whose HTTP servers must keep answering. */
function agent(args: string[], timeoutMs = 30_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [AGENT_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

async function aggregator(t: Test, status = 202) {
  const received: { auth?: string; report: NodeReport }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ auth: req.headers.authorization, report: JSON.parse(body) as NodeReport });
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ message: status === 202 ? 'ok' : 'body.node.name: too long' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

t.test('--once delivers one report, with the token, and exits 0', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-run-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'token'), 's3cret\n');
  const { url, received } = await aggregator(t);
  const run = await agent(['run', '--once', ...base, '--aggregator-url', url, '--token-file', path.join(dir, 'token'), '--health-file', path.join(dir, 'alive')]);
  t.equal(run.status, 0, run.stderr);
  t.equal(received.length, 1);
  t.ok(existsSync(path.join(dir, 'alive')), 'the health file is touched');
  t.equal(received[0]?.auth, 'Bearer s3cret');
  t.equal(received[0]?.report.node.name, 'n1');
  t.notOk(run.stdout.includes('s3cret'), 'the token is not logged');
  t.notOk(run.stdout.includes('cali-INPUT'), 'the report is not logged');
});

t.test('--once with nobody listening: exit 1, one line saying so', async (t) => {
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const run = await agent(['run', '--once', ...base, '--aggregator-url', `http://127.0.0.1:${port}`, '--sample-interval', '0.2']);
  t.equal(run.status, 1);
  t.equal(run.stdout.split('\n').filter((l) => l.includes('aggregator unreachable')).length, 1);
});

t.test('--once rejected with a 400: exit 1, the reason logged, no retry', async (t) => {
  const { url, received } = await aggregator(t, 400);
  const run = await agent(['run', '--once', ...base, '--aggregator-url', url]);
  t.equal(run.status, 1);
  t.equal(received.length, 1, 'sent once');
  t.match(run.stdout, /aggregator rejected the report/);
  t.match(run.stdout, /body\.node\.name: too long/);
});

t.test('SIGTERM while waiting for the next sample: a clean exit, at once', async (t) => {
  const { url, received } = await aggregator(t);
  const child = spawn(process.execPath, [AGENT_BIN, 'run', ...base, '--aggregator-url', url, '--sample-interval', '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  while (received.length === 0) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGTERM');
  // The next sample is a minute away: exiting before it means the wait was cut short.
  const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running after 5 s'), 5_000))]);
  if (code === 'still running after 5 s') child.kill('SIGKILL');
  t.equal(code, 0);
  t.match(out, /"msg":"stopping"/);
});

t.test('not root: the iptables sources fail with a clear error, the rest is reported', { skip: process.getuid?.() !== 0 ? 'needs root to drop to another user' : false }, async (t) => {
  const run = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, AGENT_BIN, 'collect', '--node-name', 'n1', '--host-root', path.join(HOST_FIXTURES, 'unique')], { encoding: 'utf8', timeout: 20_000 });
  if (run.error) return t.plan(0, `setpriv: ${run.error.message}`);
  const report = JSON.parse(run.stdout) as NodeReport;
  t.equal(run.status, 0, 'the machine ID alone is worth a report');
  t.equal(report.machineId.etc.status, 'ok');
  const nftSave = report.errors.find((e) => e.source === 'iptables-nft-save');
  t.ok(nftSave, 'iptables-nft-save failed as an error entry');
  t.match(nftSave?.message, /exit|permission|denied/i);
});
