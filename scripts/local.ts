// npm start: nodeprep on this machine alone, on its embedded defaults. Starts an aggregator on
// loopback and an agent that reads this host (--host-root /), waits for the first report, prints
// the guide's four steps (ready / not ready / unknown, and why) and the findings, and keeps both
// running until Ctrl-C. The agent only reads: it runs iptables-save / nft list tables (as root;
// as another user those sources report an error) and reads /etc/machine-id.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { hostNodeName } from '../agent/cli.js';
import type { Readiness } from '../protocol/illumio.js';
import { readinessLines } from './readiness-text.js';
import { shebangFlags } from './shebang.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PORT = process.env.PORT ?? '8080';
const BASE = `http://127.0.0.1:${PORT}`;
const children: ChildProcess[] = [];
// The agent as it ships: the bundle, with the node flags of its #! line (Dockerfile.agent's too).
const AGENT = 'dist/nodeprep-agent.mjs';
const AGGREGATOR = 'dist/nodeprep-aggregator.mjs';

function start(name: string, args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = `[${name}] `;
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8');
    let carry = '';
    stream.on('data', (d: string) => {
      const lines = (carry + d).split('\n');
      carry = lines.pop() ?? '';
      for (const line of lines) process.stdout.write(prefix + line + '\n');
    });
  }
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`${name} exited (${code ?? signal}); stopping`);
      stop(1);
    }
  });
  children.push(child);
  return child;
}

let stopping = false;
function stop(code = 0): void {
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 1500).unref();
}
process.on('SIGINT', () => stop());
process.on('SIGTERM', () => stop());

async function getJson(route: string): Promise<unknown> {
  const res = await fetch(BASE + route);
  return res.json();
}

async function waitFor(what: string, check: () => Promise<boolean>, seconds: number): Promise<void> {
  for (let i = 0; i < seconds * 10; i++) {
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    await delay(100);
  }
  throw new Error(`${what} did not happen within ${seconds} s`);
}

// Another program on the port would answer /readyz in our aggregator's place, and the agent would
// report to it: say so before starting anything.
async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

if (!(await portFree(Number(PORT)))) {
  console.error(`npm start: 127.0.0.1:${PORT} is already in use by another program; choose another port: PORT=9090 npm start`);
  process.exit(1);
}

const nodeName = hostNodeName();
// Local mode: this machine alone. The cluster view stays off even where a kubeconfig exists, so
// that npm start never reads (or is confused by) a cluster the machine happens to reach.
start('aggregator', [...shebangFlags(path.join(ROOT, AGGREGATOR)), AGGREGATOR], { PORT, HOST: '127.0.0.1', NODE_TTL_SECONDS: '90', CLUSTER_VIEW: 'off' });
await waitFor('the aggregator answering /readyz', async () => (await fetch(`${BASE}/readyz`)).ok, 15);
start('agent', [...shebangFlags(path.join(ROOT, AGENT)), AGENT, 'run', '--host-root', '/', '--node-name', nodeName, '--aggregator-url', BASE, '--sample-interval', '15'], {});
await waitFor('the first report', async () => ((await getJson('/v1/nodes')) as { nodes: unknown[] }).nodes.length > 0, 30);

const readiness = (await getJson('/v1/readiness')) as Readiness;
const { findings } = (await getJson('/v1/findings')) as { findings: { severity: string; code: string; message: string }[] };
console.log(`\nnodeprep is running: aggregator ${BASE}, agent for node "${nodeName}" (host root /).`);
// The guide's steps first, as the report object lists them; the findings behind them below.
for (const line of readinessLines(readiness)) console.log(line);
console.log(findings.length ? `${findings.length} finding(s) now:` : 'No findings.');
for (const f of findings) console.log(`  ${f.severity.padEnd(8)} ${f.code.padEnd(26)} ${f.message}`);
console.log(`\nRead them again:  curl -s ${BASE}/v1/findings`);
console.log(`The steps:        curl -s ${BASE}/v1/readiness`);
console.log(`This node:        curl -s ${BASE}/v1/nodes/${nodeName}`);
console.log(`Metrics:          curl -s ${BASE}/metrics`);
console.log('Alerts ("finding raised" / "finding resolved") appear below as the aggregator logs them. Ctrl-C stops both.\n');
