// What the benchmarks share: a busy node's ruleset loaded into a network namespace, medians, and
// readings of processes from /proc.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { CLOCK_TICKS_PER_S, procMemory, procStat } from '../support/proc.js';
import { generateIptablesRules, type RulesetShape } from './gen-iptables.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The agent as it ships: the bundle that Dockerfile.agent copies (scripts/bundle.mjs). */
export const AGENT = path.join(ROOT, 'dist/nodeprep-agent.mjs');

/** A node with 5,000 services, 3 endpoints each, and Calico in Insert mode: about 75,000 lines. */
export const BUSY_NODE: RulesetShape = { services: 5000, endpoints: 3, calico: 'insert' };

export { shebangFlags } from '../../scripts/shebang.js';

/** Why this machine cannot load a ruleset into a namespace, or undefined when it can. */
export function namespacesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  const probe = `npbenchprobe${process.pid}`;
  if (spawnSync('ip', ['netns', 'add', probe]).status !== 0) return 'ip netns add failed';
  spawnSync('ip', ['netns', 'del', probe]);
  if (spawnSync('sh', ['-c', 'command -v iptables-nft-restore']).status !== 0) return 'no iptables-nft-restore (Debian package iptables)';
  return undefined;
}

let namespaces = 0;
let staleRemoved = false;

/** Removes the namespaces of earlier benchmark runs that were killed before they could (npbench<pid>x<n>). */
function removeStaleNamespaces(): void {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const name of list.split('\n').map((l) => l.split(' ')[0] ?? '')) {
    const pid = Number(/^npbench(\d+)x\d+$/.exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      spawnSync('ip', ['netns', 'del', name]);
    }
  }
}

/**
 * A network namespace holding a generated ruleset, loaded with the real iptables-nft-restore: in
 * it, the real iptables-save prints what it prints on such a node. Remove it with remove().
 */
export class RulesetNamespace {
  readonly name = `npbench${process.pid}x${namespaces++}`;
  readonly lines: number;
  private removed = false;

  constructor(shape: RulesetShape) {
    if (!staleRemoved) {
      staleRemoved = true;
      removeStaleNamespaces();
    }
    execFileSync('ip', ['netns', 'add', this.name]);
    try {
      this.exec('ip', ['link', 'set', 'lo', 'up']);
      const rules = generateIptablesRules(shape);
      this.lines = rules.split('\n').length - 1;
      this.exec('iptables-nft-restore', [], rules);
    } catch (err) {
      this.remove();
      throw err;
    }
  }

  exec(cmd: string, args: string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', this.name, cmd, ...args], { input, maxBuffer: 1 << 28, encoding: 'utf8' });
  }

  /** A process inside the namespace; `ip netns exec` execs it, so the pid is the process's own. */
  spawn(cmd: string, args: string[], opts: { stdout?: 'ignore' | 'pipe'; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: ['ignore', opts.stdout ?? 'ignore', 'inherit'], env: opts.env ?? process.env });
  }

  remove(): void {
    if (this.removed) return;
    this.removed = true;
    spawnSync('ip', ['netns', 'del', this.name]);
  }
}

/** What one report carried: its rulesets ("ipv4/nft 75,0xx rules") and the sources that failed. */
export interface ReceivedReport {
  rulesets: string[];
  errors: string[];
  /** When this process read the receiver's line about it (epoch ms). */
  at: number;
}

/**
 * A bare HTTP server inside a namespace that answers every POST with 202 and prints what each
 * report carried: what the agent sends to, without an aggregator's own cost in the figures.
 * With `tls` (PEM files), HTTPS, as the chart's aggregator serves by default.
 */
export async function startReceiver(ns: RulesetNamespace, tls?: { keyFile: string; certFile: string }): Promise<{ url: string; reports: ReceivedReport[]; stop: () => Promise<void> }> {
  const options = tls ? `{ key: require('node:fs').readFileSync(${JSON.stringify(tls.keyFile)}), cert: require('node:fs').readFileSync(${JSON.stringify(tls.certFile)}) }` : '{}';
  const script = `const s = require(${JSON.stringify(tls ? 'node:https' : 'node:http')}).createServer(${options}, (q, r) => {
      let body = '';
      q.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => {
        r.writeHead(202).end('{}');
        let rep = {};
        try { rep = JSON.parse(body); } catch {}
        const rulesets = (rep.iptables ?? []).map((x) => x.family + '/' + x.backend + ' ' + x.ruleCount.toLocaleString('en') + ' rules');
        const errors = (rep.errors ?? []).map((e) => e.source + ': ' + e.message);
        console.log('report ' + JSON.stringify({ rulesets, errors }));
      });
    });
    s.listen(0, '127.0.0.1', () => console.log('listening ' + s.address().port));`;
  const child = ns.spawn(process.execPath, ['-e', script], { stdout: 'pipe' });
  const reports: ReceivedReport[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('report ')) reports.push({ ...(JSON.parse(line.slice('report '.length)) as Omit<ReceivedReport, 'at'>), at: Date.now() });
      const m = /^listening (\d+)$/.exec(line);
      if (m) resolve(Number(m[1]));
    });
  });
  return { url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, reports, stop: () => stopProcess(child) };
}

export function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  return exited;
}

/** The real iptables-save output of the ruleset where this machine can make it; the generator's text otherwise. */
export function makeDump(shape: RulesetShape = BUSY_NODE): { text: string; saveMs?: number; source: string } {
  const why = namespacesUnavailable();
  if (why) return { text: generateIptablesRules(shape), source: `generator output, not through iptables-save: ${why}` };
  const ns = new RulesetNamespace(shape);
  try {
    let text = '';
    const saveMs = median(5, () => {
      text = ns.exec('iptables-nft-save', []);
    });
    return { text, saveMs, source: 'real iptables-save in a scratch namespace' };
  } finally {
    ns.remove();
  }
}

export function median(runs: number, fn: () => unknown): number {
  fn(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return middle(times);
}

export function middle(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export { CLOCK_TICKS_PER_S, procMemory, procStat, type ProcStat } from '../support/proc.js';

/** Of a process's resident set, what is mapped from files (the node binary, libraries) rather than anonymous memory, in KiB. */
export function procFileBackedKiB(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return kib('Rss') - kib('Anonymous');
  } catch {
    return undefined;
  }
}

/** The processes whose parent is `pid` (this kernel may lack /proc/<pid>/task/<tid>/children). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (procStat(Number(entry))?.ppid === pid) out.push(Number(entry));
  }
  return out;
}

/**
 * Runs a command to its end and reads it from /proc every 2 ms meanwhile: its peak resident set
 * (VmHWM) and the CPU it had used at the last reading (user + system; ticks of 10 ms).
 */
export function watchProcess(cmd: string, args: string[]): Promise<{ peakKiB: number; cpuMs: number; wallMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'ignore'] });
    let peakKiB = 0;
    let ticks = 0;
    const sample = () => {
      const m = procMemory(child.pid!);
      if (m) peakKiB = Math.max(peakKiB, m.hwmKiB);
      const st = procStat(child.pid!);
      if (st) ticks = st.own;
    };
    const timer = setInterval(sample, 2);
    child.on('error', reject);
    child.on('exit', () => {
      clearInterval(timer);
      resolve({ peakKiB, cpuMs: (ticks / CLOCK_TICKS_PER_S) * 1000, wallMs: performance.now() - t0 });
    });
  });
}

/** Peak resident set (VmHWM) of a child process, read from /proc until it exits. */
export async function peakRss(cmd: string, args: string[]): Promise<number> {
  return (await watchProcess(cmd, args)).peakKiB;
}
