// What the benchmarks share: the big ruleset, medians, and memory readings of child processes.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const AGENT = path.join(ROOT, 'dist/agent/main.js');
const GEN = process.env.GEN_IPTABLES ?? path.join(ROOT, '../shared/tools/gen-iptables.mjs');

/** The node flags on the agent's "#!/usr/bin/env -S node ..." line: run it as its users do. */
export function shebangFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env -S node (.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/) : [];
}

/** The real iptables-save output where this machine can make it; the generator's text otherwise. */
export function makeDump(dir: string): { text: string; saveMs?: number; source: string } {
  if (!existsSync(GEN)) throw new Error(`${GEN} not found: set GEN_IPTABLES to shared/tools/gen-iptables.mjs`);
  const rules = execFileSync(process.execPath, [GEN, '--services', '5000', '--endpoints', '3'], { maxBuffer: 1 << 28, encoding: 'utf8' });
  const ns = `npbench${process.pid}`;
  if (process.getuid?.() !== 0 || spawnSync('ip', ['netns', 'add', ns]).status !== 0) {
    return { text: rules, source: 'generator output; no namespace here, so not through iptables-save' };
  }
  try {
    writeFileSync(path.join(dir, 'rules'), rules);
    execFileSync('ip', ['netns', 'exec', ns, 'iptables-restore', path.join(dir, 'rules')]);
    let text = '';
    const saveMs = median(5, () => {
      text = execFileSync('ip', ['netns', 'exec', ns, 'iptables-save'], { maxBuffer: 1 << 28, encoding: 'utf8' });
    });
    return { text, saveMs, source: 'real iptables-save in a scratch namespace' };
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
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
  times.sort((a, b) => a - b);
  return times[Math.floor(runs / 2)]!;
}

/** Peak resident set (VmHWM) of a child process, read from /proc until it exits. */
export function peakRss(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'ignore'] });
    let peak = 0;
    const sample = () => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peak = Math.max(peak, Number(m[1]));
      } catch {
        // exited between samples
      }
    };
    const timer = setInterval(sample, 2);
    child.on('error', reject);
    child.on('exit', () => {
      clearInterval(timer);
      resolve(peak);
    });
  });
}
