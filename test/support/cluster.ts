// A cluster made of network namespaces, for the end-to-end test: a hub namespace that runs the
// aggregator, node namespaces joined to it by veth pairs, each running a real agent process.
// Addresses are from 198.18.0.0/15 (RFC 2544, reserved for benchmarks) and exist only inside
// namespaces this file creates. The test reads the API through a Unix socket that a forwarder
// inside the hub namespace bridges to the aggregator's loopback port: no address of the host's
// own network is used.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { AGENT_BIN, AGGREGATOR_BIN, agentNodeFlags, aggregatorNodeFlags } from './fixtures.js';

const PREFIX = 'npe2e';
export const AGGREGATOR_PORT = 18080;

export interface Proc {
  child: ChildProcess;
  /** Every stdout line so far. */
  lines: string[];
  /** The first 8 KiB of stderr, for failure messages. */
  stderr: () => string;
  exited: Promise<number | null>;
}

export function spawnLogged(argv: string[], env: NodeJS.ProcessEnv = process.env): Proc {
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let carry = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    const parts = (carry + d).split('\n');
    carry = parts.pop() ?? '';
    lines.push(...parts);
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    if (stderr.length < 8192) stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, lines, stderr: () => stderr, exited };
}

/** Removes namespaces left by an earlier run that was killed before it could clean up. */
export function removeStaleNamespaces(): void {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${PREFIX}(\\d+)`).exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) spawnSync('ip', ['netns', 'del', name]);
  }
}

export class Cluster {
  readonly hub = `${PREFIX}${process.pid}hub`;
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-e2e-'));
  readonly socket = path.join(this.dir, 'api.sock');
  readonly tokenFile = path.join(this.dir, 'token');
  private namespaces: string[] = [];
  private procs: ChildProcess[] = [];
  aggregator?: Proc;
  agents = new Map<string, Proc>();
  nodeIndex = new Map<string, number>();

  constructor() {
    writeFileSync(this.tokenFile, 'e2e-token-' + process.pid + '\n');
    this.addNamespace(this.hub);
    this.exec(this.hub, 'ip', ['link', 'set', 'lo', 'up']);
    // The forwarder: Unix socket (reachable from the test) to the aggregator's loopback port.
    this.track(
      spawnLogged([
        'ip', 'netns', 'exec', this.hub, process.execPath, '-e',
        `require('net').createServer((c) => { const u = require('net').connect(${AGGREGATOR_PORT}, '127.0.0.1');` +
          ` c.pipe(u).pipe(c); u.on('error', () => c.destroy()); c.on('error', () => u.destroy()); }).listen(${JSON.stringify(this.socket)})`,
      ]),
    );
  }

  private addNamespace(name: string): void {
    execFileSync('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
  }

  private track(p: Proc): Proc {
    this.procs.push(p.child);
    return p;
  }

  exec(ns: string, cmd: string, args: string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
  }

  /** A node: its namespace, a veth pair to the hub, and a host-root tree with a machine ID. */
  addNode(name: string, machineId: string): { ns: string; hostRoot: string; aggregatorUrl: string } {
    const index = this.nodeIndex.size + 1;
    this.nodeIndex.set(name, index);
    const ns = this.nodeNs(name);
    this.addNamespace(ns);
    const here = `ve${process.pid % 10000}n${index}`;
    const there = `${here}h`;
    execFileSync('ip', ['link', 'add', here, 'netns', ns, 'type', 'veth', 'peer', 'name', there, 'netns', this.hub]);
    this.exec(ns, 'ip', ['addr', 'add', `198.18.${index}.2/30`, 'dev', here]);
    this.exec(this.hub, 'ip', ['addr', 'add', `198.18.${index}.1/30`, 'dev', there]);
    for (const [n, dev] of [[ns, here], [this.hub, there]] as const) this.exec(n, 'ip', ['link', 'set', dev, 'up']);
    this.exec(ns, 'ip', ['link', 'set', 'lo', 'up']);
    const hostRoot = path.join(this.dir, 'hosts', name);
    mkdirSync(path.join(hostRoot, 'etc'), { recursive: true });
    mkdirSync(path.join(hostRoot, 'var/lib/dbus'), { recursive: true });
    this.setMachineId(name, machineId);
    return { ns, hostRoot, aggregatorUrl: `http://198.18.${index}.1:${AGGREGATOR_PORT}` };
  }

  nodeNs(name: string): string {
    return `${PREFIX}${process.pid}${name}`;
  }

  setMachineId(name: string, machineId: string): void {
    writeFileSync(path.join(this.dir, 'hosts', name, 'etc/machine-id'), machineId + '\n');
  }

  startAggregator(env: Record<string, string>): Proc {
    this.aggregator = this.track(
      spawnLogged(['ip', 'netns', 'exec', this.hub, process.execPath, ...aggregatorNodeFlags(), AGGREGATOR_BIN], {
        ...process.env,
        PORT: String(AGGREGATOR_PORT),
        HOST: '0.0.0.0',
        AUTH_TOKEN_FILE: this.tokenFile,
        ...env,
      }),
    );
    return this.aggregator;
  }

  startAgent(name: string, flags: string[], env: NodeJS.ProcessEnv = process.env): Proc {
    const index = this.nodeIndex.get(name)!;
    const proc = this.track(
      spawnLogged([
        'ip', 'netns', 'exec', this.nodeNs(name), process.execPath, ...agentNodeFlags(), AGENT_BIN, 'run',
        '--node-name', name,
        '--host-root', path.join(this.dir, 'hosts', name),
        '--aggregator-url', `http://198.18.${index}.1:${AGGREGATOR_PORT}`,
        '--token-file', this.tokenFile,
        ...flags,
      ], env),
    );
    this.agents.set(name, proc);
    return proc;
  }

  /** Background process inside a namespace (a rule-swapping loop, say), ended at cleanup. */
  background(ns: string, script: string): Proc {
    return this.track(spawnLogged(['ip', 'netns', 'exec', ns, 'bash', '-c', script]));
  }

  /** GET through the forwarder; undefined while the aggregator is not answering. */
  get<T>(route: string): Promise<{ status: number; body: T } | undefined> {
    return new Promise((resolve) => {
      const req = http.get({ socketPath: this.socket, path: route, timeout: 2000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) as T });
          } catch {
            resolve(undefined);
          }
        });
      });
      req.on('error', () => resolve(undefined));
      req.on('timeout', () => req.destroy());
    });
  }

  /** Stops every process and removes every namespace and file; safe to call twice. */
  cleanup(): void {
    for (const p of this.procs) if (p.exitCode === null) p.kill('SIGKILL');
    // `ip netns exec` children die with their parent's SIGKILL only if they get it: kill what runs
    // inside the namespaces too.
    for (const ns of this.namespaces) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean) ?? [];
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone already
        }
      }
      spawnSync('ip', ['netns', 'del', ns]);
    }
    this.namespaces = [];
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `check` until it returns a value, or fails after `seconds` with `what`. */
export async function eventually<T>(what: string, seconds: number, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what}: not within ${seconds} s${last ? ` (last error: ${(last as Error).message})` : ''}`);
}
