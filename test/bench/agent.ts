// Agent in run mode on a busy node (design.md section 8; issue 13, items 3 and 15): the bundle
// that ships (dist/nodeprep-agent.mjs) with the node flags it ships with, reading the real
// iptables-save of the 5,000-service ruleset in a network namespace and sending every sample over
// HTTPS (as the chart's agents do by default) to a bare server in the same namespace. Prints its
// resident memory between samples and at its peak, and its CPU per sample, its own and with the
// commands it runs (iptables-save, nft), each beside its target. Measured in the same run, for comparison: the commands alone, the agent
// on an empty ruleset, the agent as the image ran it before the bundle, and bare Node.js. These
// agents read the rulesets at every sample (--read-rulesets every-sample, today's polling); the
// listening agent is measured beside a polling one afterwards (agent-listen.ts).
// Figures only: nothing here passes or fails.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  AGENT, BUSY_NODE, CLOCK_TICKS_PER_S, ROOT, RulesetNamespace, childrenOf, middle, namespacesUnavailable, procFileBackedKiB, procMemory, procStat, shebangFlags, startReceiver,
  stopProcess, watchProcess, type ReceivedReport,
} from './tools.js';
import { testCa } from '../support/tls.js';
import { benchListening } from './agent-listen.js';

const INTERVAL_S = 2; // the chart's default is 15 s; a shorter interval leaves V8 less idle time, not more
const WARMUP_SAMPLES = 2;
const SAMPLES = 10;
const POLL_MS = 50;
// The commands collect-iptables.ts and collect-nft.ts run on a node without legacy iptables tables.
const COMMANDS = [['iptables-nft-save'], ['ip6tables-nft-save'], ['nft', 'list', 'tables']];
// The image's command before the bundle: the tsc output with node_modules, and this one flag.
const BEFORE = { script: path.join(ROOT, 'dist/agent/main.js'), flags: ['--max-semi-space-size=1'] };

type Receiver = Awaited<ReturnType<typeof startReceiver>>;

export interface AgentRunFigures {
  /** VmRSS between samples (while no command runs): median and highest. */
  steadyMiB: { median: number; max: number };
  /** VmHWM at the end: the highest resident set since start. */
  peakMiB: number;
  /** Of the resident set at the end, the part mapped from files: the node binary's pages, shared and reclaimable. */
  fileBackedMiB: number;
  /** The agent and the commands it runs, resident at the same moment: the highest sum. */
  withChildrenPeakMiB: number;
  /** The largest command (VmHWM). */
  childPeakMiB: number;
  /** CPU per sample: the agent's own, and with the children it waited for (cutime + cstime). */
  ownCpuMs: number;
  totalCpuMs: number;
  /** What the measured samples' reports carried. */
  reports: ReceivedReport[];
}

export interface AgentRunOptions {
  nodeArgs: string[];
  /** The CA of an https receiver. */
  caFile?: string;
  /** The script to run; the bundle that ships unless given. */
  agent?: string;
  env?: NodeJS.ProcessEnv;
  samples?: number;
  intervalS?: number;
}

/** `nodeprep-agent run` inside `ns`, measured from /proc over `samples` samples after a warm-up. */
export async function measureAgentRun(ns: RulesetNamespace, receiver: Receiver, opts: AgentRunOptions): Promise<AgentRunFigures> {
  const samples = opts.samples ?? SAMPLES;
  const hostRoot = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-bench-host-'));
  mkdirSync(path.join(hostRoot, 'etc'));
  writeFileSync(path.join(hostRoot, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
  // A heartbeat shorter than the interval: every sample sends, so the receiver counts samples.
  const child = ns.spawn(process.execPath, [...opts.nodeArgs, opts.agent ?? AGENT, 'run', '--node-name', 'bench', '--host-root', hostRoot,
    '--aggregator-url', receiver.url, ...(opts.caFile ? ['--ca-file', opts.caFile] : []), '--sample-interval', String(opts.intervalS ?? INTERVAL_S), '--read-rulesets', 'every-sample', '--heartbeat-interval', '1', '--log-level', 'warn'], { env: { ...process.env, ...opts.env } });
  const pid = child.pid!;
  const first = receiver.reports.length + WARMUP_SAMPLES;
  const last = first + samples;
  const steady: number[] = [];
  let withChildren = 0;
  let childPeak = 0;
  let start: ReturnType<typeof procStat>;
  let end: ReturnType<typeof procStat>;
  let peakKiB: number;
  let fileKiB: number;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the agent exited with ${child.exitCode}`);
      const count = receiver.reports.length;
      // Read at the moment a report arrives: the sample's commands have been waited for, so
      // their CPU is in the agent's cutime and cstime.
      if (count >= first && !start) start = procStat(pid);
      if (count >= last) {
        end = procStat(pid);
        peakKiB = procMemory(pid)?.hwmKiB ?? 0;
        fileKiB = procFileBackedKiB(pid) ?? 0;
        break;
      }
      const own = procMemory(pid);
      if (start && own) {
        const kids = childrenOf(pid).map((c) => procMemory(c)).filter((m) => m !== undefined);
        if (kids.length === 0) steady.push(own.rssKiB);
        withChildren = Math.max(withChildren, kids.reduce((sum, m) => sum + m.rssKiB, own.rssKiB));
        for (const m of kids) childPeak = Math.max(childPeak, m.hwmKiB);
      }
      await delay(POLL_MS);
    }
  } finally {
    await stopProcess(child);
    rmSync(hostRoot, { recursive: true, force: true });
  }
  const ms = (ticks: number) => ((ticks / CLOCK_TICKS_PER_S) * 1000) / samples;
  return {
    steadyMiB: { median: middle(steady) / 1024, max: Math.max(...steady) / 1024 },
    peakMiB: peakKiB / 1024,
    fileBackedMiB: fileKiB! / 1024,
    withChildrenPeakMiB: withChildren / 1024,
    childPeakMiB: childPeak / 1024,
    ownCpuMs: ms(end!.own - start!.own),
    totalCpuMs: ms(end!.own + end!.children - start!.own - start!.children),
    reports: receiver.reports.slice(first, last),
  };
}

/** Resident set of a Node.js that loads nothing, after it has settled. */
async function bareNode(): Promise<{ rssMiB: number; fileBackedMiB: number }> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await delay(1500);
  const rss = procMemory(child.pid!)?.rssKiB ?? 0;
  const file = procFileBackedKiB(child.pid!) ?? 0;
  await stopProcess(child);
  return { rssMiB: rss / 1024, fileBackedMiB: file / 1024 };
}

/** "10 reports, each with ipv4/nft 55,027 rules, ipv6/nft 0 rules; errors: nft: ... (9 of them)". */
function describeReports(reports: ReceivedReport[]): string {
  const count = (items: string[]) => {
    const n = new Map<string, number>();
    for (const i of items) n.set(i, (n.get(i) ?? 0) + 1);
    return [...n].map(([k, v]) => (v === reports.length ? k : `${k} (${v} of them)`)).join(', ');
  };
  const rulesets = count(reports.flatMap((r) => r.rulesets));
  const errors = count(reports.flatMap((r) => r.errors));
  return `${reports.length} reports, each with ${rulesets || 'no ruleset'}; errors: ${errors || 'none'}`;
}

const f1 = (n: number) => n.toFixed(1);
const f0 = (n: number) => Math.round(n).toLocaleString('en');

export async function benchAgent(): Promise<void> {
  const why = namespacesUnavailable();
  if (why) {
    console.log(`agent run: skipped (${why}): it loads the ruleset into a network namespace`);
    return;
  }
  const flags = shebangFlags(AGENT);
  const cleanups: (() => void)[] = [];
  const ca = testCa({ teardown: (fn) => cleanups.push(fn) });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-bench-tls-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const server = ca.server('IP:127.0.0.1');
  const tls = { keyFile: path.join(dir, 'key.pem'), certFile: path.join(dir, 'cert.pem') };
  writeFileSync(tls.keyFile, server.key);
  writeFileSync(tls.certFile, server.cert);
  const https = { caFile: ca.caFile };
  const busy = new RulesetNamespace(BUSY_NODE);
  const empty = new RulesetNamespace({ services: 0, endpoints: 0, calico: 'none' });
  const receivers: Receiver[] = [];
  try {
    const inBusy = await startReceiver(busy, tls);
    const inEmpty = await startReceiver(empty, tls);
    receivers.push(inBusy, inEmpty);
    const busyLabel = `${BUSY_NODE.services.toLocaleString('en')} services (a ${busy.lines.toLocaleString('en')}-line ruleset)`;
    console.log(`agent run: one sample every ${INTERVAL_S} s, ${SAMPLES} samples measured after ${WARMUP_SAMPLES}, each sent over HTTPS to a bare server;`);
    console.log(`  the real iptables-save and nft in a network namespace holding the ruleset`);

    const bare = await bareNode();
    const shipped = await measureAgentRun(busy, inBusy, { nodeArgs: flags, ...https });
    const onEmpty = await measureAgentRun(empty, inEmpty, { nodeArgs: flags, ...https });
    const before = existsSync(BEFORE.script) ? await measureAgentRun(busy, inBusy, { nodeArgs: BEFORE.flags, agent: BEFORE.script, ...https }) : undefined;
    const commands = [];
    for (const cmd of COMMANDS) commands.push({ cmd: cmd.join(' '), ...(await watchProcess('ip', ['netns', 'exec', busy.name, ...cmd])) });

    const rows: [string, AgentRunFigures | undefined][] = [
      [`${busyLabel}, the bundle as it ships (node ${flags.join(' ')})`, shipped],
      ['empty ruleset, the same', onEmpty],
      [`${busyLabel}, as the image ran it before the bundle (node ${BEFORE.flags.join(' ')} dist/agent/main.js, with node_modules)`, before],
    ];
    for (const [label, m] of rows) {
      if (!m) continue;
      console.log(`  ${label}`);
      console.log(`    RSS between samples ${f1(m.steadyMiB.median)} MiB (highest ${f1(m.steadyMiB.max)}), peak ${f1(m.peakMiB)} MiB   target < 64 MiB (stretch 48); ${(m.steadyMiB.median / bare.rssMiB).toFixed(2)}x bare Node.js`);
      console.log(`    of which mapped from files (the node binary's pages: shared, reclaimable) ${f1(m.fileBackedMiB)} MiB`);
      console.log(`    CPU per sample: the agent ${f1(m.ownCpuMs)} ms, with the commands it runs ${f0(m.totalCpuMs)} ms   target: a few ms`);
      console.log(`    with its commands running: ${f1(m.withChildrenPeakMiB)} MiB resident together at most; the largest command ${f1(m.childPeakMiB)} MiB`);
      console.log(`    ${describeReports(m.reports)}`);
    }
    console.log(`  each command alone, once, in the ${BUSY_NODE.services.toLocaleString('en')}-service namespace:`);
    for (const c of commands) console.log(`    ${c.cmd.padEnd(20)} CPU ${f0(c.cpuMs).padStart(5)} ms, ${f0(c.wallMs).padStart(5)} ms wall, peak ${f1(c.peakKiB / 1024)} MiB`);
    console.log(`  bare Node.js ${process.version}: ${f1(bare.rssMiB)} MiB, of which mapped from files ${f1(bare.fileBackedMiB)} MiB`);
    for (const r of receivers) await r.stop();
    receivers.length = 0;
    await benchListening(busy, tls, https.caFile);
  } finally {
    for (const r of receivers) await r.stop();
    busy.remove();
    empty.remove();
    for (const fn of cleanups) fn();
  }
}
