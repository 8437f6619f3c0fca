// Parser benchmark (design.md section 8, issue "Foundation"): a 75,000-line dump of a kube-proxy
// node with 5,000 services, made by the real iptables-save in a scratch network namespace.
// Figures, and ratios against baselines measured in the same run; no pass/fail.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { IptablesSaveParser, parseIptablesSave } from '../../agent/iptables-save.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const GEN = process.env.GEN_IPTABLES ?? path.join(ROOT, '../shared/tools/gen-iptables.mjs');
const RUNS = 21;

export async function benchParser(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-bench-'));
  try {
    const { text, saveMs, source } = makeDump(dir);
    const file = path.join(dir, 'dump.txt');
    writeFileSync(file, text);
    const lines = text.split('\n').length - 1;
    console.log(`parser: ${lines} lines, ${(text.length / 1e6).toFixed(1)} MB (${source})`);

    // The agent parses 64 KiB chunks as they come out of the pipe; so does this.
    const chunks: string[] = [];
    for (let i = 0; i < text.length; i += 64 * 1024) chunks.push(text.slice(i, i + 64 * 1024));
    const split = median(RUNS, () => text.split('\n').length);
    const parse = median(RUNS, () => parseIptablesSave(text).ruleCount);
    const streamed = median(RUNS, () => {
      const parser = new IptablesSaveParser();
      for (const c of chunks) parser.push(c);
      return parser.end().ruleCount;
    });
    console.log(`  split into lines (baseline)   ${split.toFixed(2)} ms`);
    console.log(`  parseIptablesSave (whole)     ${parse.toFixed(2)} ms   ratio ${(parse / split).toFixed(2)}x (target <= 3)`);
    console.log(`  parser fed 64 KiB chunks      ${streamed.toFixed(2)} ms   ratio ${(streamed / split).toFixed(2)}x`);
    if (saveMs !== undefined) console.log(`  iptables-save printing it     ${saveMs.toFixed(2)} ms   parser is ${((parse / saveMs) * 100).toFixed(1)}% of that`);

    const agent = path.join(ROOT, 'dist/agent/main.js');
    const rssKiB = await peakRss(process.execPath, [...shebangFlags(agent), agent, 'collect', '--node-name', 'bench', '--host-root', dir, '--from-dump', `ipv4/nft=${file}`]);
    const bareKiB = await peakRss(process.execPath, ['-e', '']);
    console.log(`  collect --from-dump peak RSS  ${(rssKiB / 1024).toFixed(1)} MiB (target < 64), bare node ${(bareKiB / 1024).toFixed(1)} MiB`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The node flags on the agent's "#!/usr/bin/env -S node ..." line: run it as its users do. */
function shebangFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env -S node (.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/) : [];
}

/** The real iptables-save output where this machine can make it; the generator's text otherwise. */
function makeDump(dir: string): { text: string; saveMs?: number; source: string } {
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

function median(runs: number, fn: () => unknown): number {
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
function peakRss(cmd: string, args: string[]): Promise<number> {
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
