// The built `nodeprep-agent run` as a process, against HTTP servers on loopback.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import t, { type Test } from 'tap';
import type { NodeReport } from '../../protocol/report.js';
import { AGENT_BIN, HOST_FIXTURES, IPTABLES_FIXTURES } from '../support/fixtures.js';
import { testCa } from '../support/tls.js';
import { alive, until } from '../support/waiting.js';

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

/** Starts the built agent; `exited` resolves with its exit code, or a note after `limitMs`. */
function startAgent(t: Test, args: string[], env: NodeJS.ProcessEnv = process.env, limitMs = 20_000) {
  const child = spawn(process.execPath, [AGENT_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (output.stdout += d));
  child.stderr.on('data', (d) => (output.stderr += d));
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const exited = (ms = limitMs) => Promise.race([done, delay(ms, `still running after ${ms / 1000} s`, { ref: false })]);
  return { child, output, exited };
}


t.test('SIGTERM while waiting for the next sample: a clean exit, code 0', async (t) => {
  const { url, received } = await aggregator(t);
  const agent = startAgent(t, ['run', ...base, '--aggregator-url', url, '--sample-interval', '60']);
  await until('first report', () => received.length > 0);
  agent.child.kill('SIGTERM');
  // The next sample is a minute away: exiting before it means the wait was cut short. A forced
  // exit would be 143, not 0 (the next test).
  t.equal(await agent.exited(), 0);
  t.match(agent.output.stdout, /"msg":"stopping"/);
  t.notMatch(agent.output.stdout, /forced exit/);
});

t.test('SIGTERM while a source hangs: a forced exit, code 143, and the hung command killed', async (t) => {
  // An iptables-nft-save that never answers (as one stuck on a busy kernel lock), first on PATH;
  // nothing else there, so the other commands fail at once. --proc-net at an empty folder: no
  // legacy save.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-hang-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sleep = execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim();
  const pidFile = path.join(dir, 'save.pid');
  writeFileSync(path.join(dir, 'iptables-nft-save'), `#!/bin/sh\necho $$ > '${pidFile}'\nexec ${sleep} 30\n`);
  chmodSync(path.join(dir, 'iptables-nft-save'), 0o755);
  const agent = startAgent(
    t,
    ['run', '--node-name', 'n1', '--host-root', path.join(HOST_FIXTURES, 'unique'), '--proc-net', dir, '--aggregator-url', 'http://127.0.0.1:9'],
    { ...process.env, PATH: dir },
  );
  await until('the hanging iptables-nft-save started', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n'));
  const savePid = Number(readFileSync(pidFile, 'utf8'));
  t.teardown(() => {
    if (alive(savePid)) process.kill(savePid, 'SIGKILL');
  });
  agent.child.kill('SIGTERM');
  t.equal(await agent.exited(), 143, '128 + SIGTERM: the agent did not stop by itself');
  t.match(agent.output.stdout, /"msg":"forced exit: a sample was still running"/);
  // The agent sent SIGKILL before it exited; the kernel may take a moment to end the process.
  await until('the hung iptables-nft-save ended', () => !alive(savePid), 5_000).catch(() => {});
  t.notOk(alive(savePid), 'the hung command did not outlive the agent');
});


t.test('an aggregator certificate the agent does not trust: logged once, with the reason; retried every sample', async (t) => {
  const ca = testCa(t);
  const connections = { count: 0 };
  const server = https.createServer(ca.server(), (_req, res) => res.writeHead(202).end('{}'));
  server.on('connection', () => connections.count++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  // No --ca-file: the test CA is unknown to the agent.
  const agent = startAgent(t, ['run', ...base, '--aggregator-url', `https://127.0.0.1:${(server.address() as AddressInfo).port}`, '--sample-interval', '0.1', '--heartbeat-interval', '0.1']);
  await until('four attempts', () => connections.count >= 4);
  agent.child.kill('SIGTERM');
  t.equal(await agent.exited(), 0);
  const lines = agent.output.stdout.split('\n').filter((l) => l.includes('certificate rejected'));
  t.equal(lines.length, 1, 'one line, however many samples');
  t.match(JSON.parse(lines[0]!), { level: 50, reason: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  t.notMatch(agent.output.stdout, /unreachable/, 'not an outage');
});

t.test('not root: the iptables sources fail with a clear error, the rest is reported', { skip: process.getuid?.() !== 0 ? 'needs root to drop to another user' : false }, async (t) => {
  // The agent's code (and node itself, from node_modules) is read from the checkout, which may lie
  // under a folder nobody can enter (a clone in /root). CAP_DAC_READ_SEARCH, ambient so that node
  // keeps it across exec, lets uid 65534 read any file and nothing more: iptables-save still
  // lacks CAP_NET_ADMIN, which is what this test is about.
  const nobody = ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=+dac_read_search', '--ambient-caps=+dac_read_search'];
  const run = spawnSync('setpriv', [...nobody, process.execPath, AGENT_BIN, 'collect', '--node-name', 'n1', '--host-root', path.join(HOST_FIXTURES, 'unique')], { encoding: 'utf8', timeout: 20_000, cwd: os.tmpdir() });
  if (run.error) return t.plan(0, `setpriv: ${run.error.message}`);
  const report = JSON.parse(run.stdout) as NodeReport;
  t.equal(run.status, 0, 'the machine ID alone is worth a report');
  t.equal(report.machineId.etc.status, 'ok');
  const nftSave = report.errors.find((e) => e.source === 'iptables-nft-save');
  t.ok(nftSave, 'iptables-nft-save failed as an error entry');
  t.match(nftSave?.message, /exit|permission|denied/i);
  t.match(nftSave?.message, /you must be root|Permission denied|Operation not permitted/, 'refused for want of privilege');
});
