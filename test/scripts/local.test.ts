// npm start (scripts/local.ts), the first thing a new user runs: the built script started as npm
// starts it, on a free loopback port, prints the guide's four steps with their state and reason
// above the findings, the same steps GET /v1/readiness answers; then Ctrl-C stops it. And the
// lines themselves, from readiness answers of each state.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { makeFinding } from '../../aggregator/detect/finding.js';
import { assessReadiness } from '../../aggregator/illumio/readiness.js';
import type { Finding } from '../../protocol/findings.js';
import { readinessLines } from '../../scripts/readiness-text.js';
import { freePort } from '../support/kube-apiserver.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const LOCAL = path.join(ROOT, 'dist/scripts/local.js');

t.test('the lines: each step with ready / not ready / unknown and its reason', async (t) => {
  const duplicate: Finding = { ...makeFinding('MACHINE_ID_DUPLICATE', ['a', 'b'], { nodes: ['a', 'b'], message: 'same ID', remediation: '', evidence: {} }), since: new Date(0).toISOString() };
  const readiness = assessReadiness({ findings: [duplicate], clusterView: false, nodes: { reporting: 2 }, calico: 'unknown' });
  const lines = readinessLines(readiness);
  t.equal(lines.length, 5, 'the verdict, then one line per step');
  t.match(lines[0], /^Ready for C-VEN: no \(/);
  const states = new Map(readiness.steps.map((s) => [s.title, s.state]));
  t.equal(states.get('Unique machine IDs'), 'not-ready', 'the duplicate blocks the first step');
  readiness.steps.forEach((s, i) => {
    const line = lines[i + 1]!;
    t.ok(line.includes(`${i + 1}. ${s.title}`), `step ${i + 1} by its title`);
    t.ok(line.includes(s.reason), `${s.title}: its reason`);
    t.match(line, { ready: /\sready\s/, 'not-ready': /\snot ready\s/, unknown: /\sunknown\s/ }[s.state], `${s.title}: ${s.state}`);
  });
});

t.test('npm start prints the four steps above the findings', async (t) => {
  if (!existsSync(LOCAL)) throw new Error(`${LOCAL} missing: npm run build first`);
  const port = String(await freePort());
  const child = spawn(process.execPath, [LOCAL], { cwd: ROOT, env: { ...process.env, PORT: port }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  // Up to a minute for both programs and the first report on a loaded machine.
  for (let i = 0; i < 600 && !/Read them again/.test(out) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  t.match(out, /Read them again/, 'it came up');
  const readiness = (await (await fetch(`http://127.0.0.1:${port}/v1/readiness`)).json()) as { steps: { title: string; state: string }[] };
  const printed = out.split('\n');
  const verdict = printed.findIndex((l) => l.startsWith('Ready for C-VEN: '));
  t.ok(verdict >= 0, 'the verdict line');
  for (const [i, s] of readiness.steps.entries()) {
    const line = printed[verdict + 1 + i] ?? '';
    t.ok(line.includes(`${i + 1}. ${s.title}`), `step ${i + 1}: ${line.trim()}`);
    t.ok(line.includes(` ${s.state === 'not-ready' ? 'not ready' : s.state} `), `as GET /v1/readiness says: ${s.state}`);
  }
  const findingsAt = printed.findIndex((l) => /^(\d+ finding\(s\) now:|No findings\.)$/.test(l));
  t.ok(findingsAt > verdict + 4, 'the findings come after the steps');
  child.kill('SIGINT');
  t.equal(await exited, 0, 'Ctrl-C stops it');
});

t.test('npm start on a port another program holds: says so and starts nothing', async (t) => {
  if (!existsSync(LOCAL)) throw new Error(`${LOCAL} missing: npm run build first`);
  // Something that answers /readyz like an aggregator would: the agent must not report to it.
  let asked = 0;
  const other = createServer((req, res) => {
    asked++;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"nodes":[]}');
  });
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  t.teardown(() => other.close());
  const port = (other.address() as AddressInfo).port;
  const child = spawn(process.execPath, [LOCAL], { cwd: ROOT, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdout.resume();
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  t.equal(code, 1, 'exit code 1');
  t.match(err, new RegExp(`127\\.0\\.0\\.1:${port} is already in use .*PORT=`), 'names the port and how to choose another');
  t.equal(asked, 0, 'nothing was sent to the other program');
});
