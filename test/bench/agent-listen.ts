// The agent listening for ruleset changes (issue 23; agent/xtables-monitor.ts, read-schedule.ts)
// beside today's polling, in the same run and the same network namespace: two agents, the
// bundle as it ships, one with --read-rulesets on-change (the default) and one with every-sample,
// both at the chart's 15 s sample interval and 60 s heartbeat, each sending over HTTPS to a bare
// receiver of its own. Both see every change, so every figure compares like with like:
//
// 1. static busy node (5,000 services) for BENCH_STATIC_MINUTES (10 by default): each agent's
//    CPU with every process it ran (its commands and the monitor child), as CPU-seconds per
//    minute and per cent of a core; resident memory between samples, and the monitor's beside it;
// 2. latency: a rule added with iptables-nft, from before the command started to the report that
//    carries it reaching the receiver, one change every 17 s (a change after a quiet spell: the
//    listener reads at most once per sample interval);
// 3. churn: kube-proxy-like partial syncs every second for a minute (KUBE-SERVICES rewritten
//    whole, as kube-proxy does, and one service's endpoints moved), one full restore of the
//    55,000-rule ruleset in the middle, then a quiet tail in which both read the final state;
// 4. the change signals themselves on the busy ruleset: `nft monitor` (which loads the whole
//    ruleset first) against `xtables-monitor -e` (which loads nothing), their first seconds.
// Figures and ratios only: nothing here passes or fails.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { generateIptablesRules } from './gen-iptables.js';
import { AGENT, BUSY_NODE, CLOCK_TICKS_PER_S, RulesetNamespace, childrenOf, middle, procMemory, procStat, shebangFlags, startReceiver, stopProcess } from './tools.js';

const SAMPLE_S = 15; // the chart's default
const STATIC_MINUTES = Number(process.env.BENCH_STATIC_MINUTES ?? 10);
const LATENCY_CHANGES = 4;
const LATENCY_SPACING_MS = 17_000; // more than the sample interval: each change finds the listener idle
const CHURN_S = 60;
const CHURN_TAIL_S = 20; // both agents read the final state within one sample interval and a bit
const MEMORY_POLL_MS = 500;

type Receiver = Awaited<ReturnType<typeof startReceiver>>;

interface Agent {
  label: string;
  child: ChildProcess;
  pid: number;
  receiver: Receiver;
  hostRoot: string;
  /** VmRSS of the agent while none of its commands runs (the monitor may). */
  steadyKiB: number[];
  /** VmRSS of the monitor child. */
  monitorKiB: number[];
  monitorPids: Set<number>;
  /** CPU ticks of each monitor process at its latest reading. */
  monitorTicks: Map<number, number>;
  /** The iptables-nft-save processes seen (each a read of the nft backend; most last longer than a poll). */
  saves: Set<number>;
}

/** Every CPU tick of the agent and its process tree so far: its own, its reaped children's, its live children's. */
function treeTicks(pid: number): number {
  const me = procStat(pid);
  if (!me) return 0;
  let ticks = me.own + me.children;
  for (const kid of childrenOf(pid)) {
    const s = procStat(kid);
    if (s) ticks += s.own + s.children;
  }
  return ticks;
}

const commOf = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};

/** nft rules in the report's ipv4/nft ruleset ("ipv4/nft 55,027 rules"). */
const ipv4Rules = (r: { rulesets: string[] }) => {
  const m = /^ipv4\/nft ([\d,]+) rules$/.exec(r.rulesets.find((x) => x.startsWith('ipv4/nft ')) ?? '');
  return m ? Number(m[1]!.replace(/,/g, '')) : undefined;
};

function startAgent(ns: RulesetNamespace, receiver: Receiver, caFile: string, label: string, readRulesets: 'on-change' | 'every-sample'): Agent {
  const hostRoot = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-bench-host-'));
  mkdirSync(path.join(hostRoot, 'etc'));
  writeFileSync(path.join(hostRoot, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
  const child = ns.spawn(process.execPath, [...shebangFlags(AGENT), AGENT, 'run', '--node-name', `bench-${readRulesets}`, '--host-root', hostRoot,
    '--aggregator-url', receiver.url, '--ca-file', caFile, '--sample-interval', String(SAMPLE_S), '--read-rulesets', readRulesets, '--log-level', 'warn']);
  return { label, child, pid: child.pid!, receiver, hostRoot, steadyKiB: [], monitorKiB: [], monitorPids: new Set(), monitorTicks: new Map(), saves: new Set() };
}

/** Reads both agents' memory every MEMORY_POLL_MS until `done` says stop. */
async function watchMemory(agents: Agent[], done: () => boolean): Promise<void> {
  while (!done()) {
    for (const a of agents) {
      const kids = childrenOf(a.pid);
      const monitors = kids.filter((k) => commOf(k) === 'xtables-monitor');
      for (const m of monitors) {
        a.monitorPids.add(m);
        const mem = procMemory(m);
        if (mem) a.monitorKiB.push(mem.rssKiB);
        const st = procStat(m);
        if (st) a.monitorTicks.set(m, st.own);
      }
      for (const k of kids) if (commOf(k).startsWith('iptables-nft-s')) a.saves.add(k);
      if (kids.length === monitors.length) {
        const mem = procMemory(a.pid);
        if (mem) a.steadyKiB.push(mem.rssKiB);
      }
    }
    await delay(MEMORY_POLL_MS);
  }
}

/** A kube-proxy partial sync: KUBE-SERVICES whole, one service's chain and its endpoint moved. */
function partialSync(kubeServices: string[], tick: number): string {
  const sep = `KUBE-SEP-BENCHCHURN${tick % 2}`;
  return [
    '*nat',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-SVC-BENCHCHURN - [0:0]',
    `:${sep} - [0:0]`,
    '-A KUBE-SERVICES -d 10.96.255.254/32 -p tcp -m comment --comment "bench/churn:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-BENCHCHURN',
    ...kubeServices,
    `-A KUBE-SVC-BENCHCHURN -m comment --comment "bench/churn:http" -j ${sep}`,
    `-A ${sep} -p tcp -m comment --comment "bench/churn:http" -m tcp -j DNAT --to-destination 10.244.${(tick >> 8) & 255}.${tick & 255}:8080`,
    'COMMIT',
    '',
  ].join('\n');
}

/** A process in `ns` for `ms`, read from /proc meanwhile: its CPU and peak resident set, then killed. */
async function firstSeconds(ns: RulesetNamespace, cmd: string, args: string[], ms: number): Promise<{ cpuMs: number; peakMiB: number }> {
  const child = ns.spawn(cmd, args);
  let ticks = 0;
  let hwm = 0;
  for (const end = Date.now() + ms; Date.now() < end; await delay(20)) {
    const s = procStat(child.pid!);
    if (s) ticks = s.own;
    hwm = Math.max(hwm, procMemory(child.pid!)?.hwmKiB ?? 0);
  }
  await stopProcess(child);
  return { cpuMs: (ticks / CLOCK_TICKS_PER_S) * 1000, peakMiB: hwm / 1024 };
}

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const perMinute = (ticks: number, ms: number) => ticks / CLOCK_TICKS_PER_S / (ms / 60_000);
const ofCore = (ticks: number, ms: number) => ((ticks / CLOCK_TICKS_PER_S) / (ms / 1000)) * 100;

/** Waits until `receiver` has a report with `rules` ipv4/nft rules arriving after `since`; its arrival time. */
async function arrival(receiver: Receiver, since: number, rules: number, timeoutMs: number): Promise<number | undefined> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await delay(20)) {
    const r = receiver.reports.find((x) => x.at >= since && ipv4Rules(x) === rules);
    if (r) return r.at;
  }
  return undefined;
}

export async function benchListening(busy: RulesetNamespace, tls: { keyFile: string; certFile: string }, caFile: string): Promise<void> {
  const listening = startAgent(busy, await startReceiver(busy, tls), caFile, 'listening (--read-rulesets on-change)', 'on-change');
  const polling = startAgent(busy, await startReceiver(busy, tls), caFile, 'polling (--read-rulesets every-sample)', 'every-sample');
  const agents = [listening, polling];
  let stopMemory = false;
  const memory = watchMemory(agents, () => stopMemory);
  try {
    console.log(`agent run, listening beside polling: both agents in the ${BUSY_NODE.services.toLocaleString('en')}-service namespace, sample interval ${SAMPLE_S} s, heartbeat 60 s, HTTPS`);
    for (const a of agents) await firstReport(a);
    await delay(5_000); // both past their first read
    const rules = ipv4Rules(listening.receiver.reports.at(-1)!)!;

    // 1. Static.
    const staticMs = STATIC_MINUTES * 60_000;
    const t0 = Date.now();
    const start = agents.map((a) => treeTicks(a.pid));
    const savesAtStart = agents.map((a) => a.saves.size);
    await delay(staticMs);
    const wall = Date.now() - t0;
    const used = agents.map((a, i) => treeTicks(a.pid) - start[i]!);
    console.log(`  static busy node, ${f1(wall / 60_000)} minutes${STATIC_MINUTES < 10 ? ` (BENCH_STATIC_MINUTES=${STATIC_MINUTES}; the issue asks for 10)` : ''}: CPU of the agent with its commands and its monitor`);
    agents.forEach((a, i) =>
      console.log(`    ${a.label.padEnd(40)} ${f2(perMinute(used[i]!, wall))} CPU-s/min = ${f2(ofCore(used[i]!, wall))}% of a core; ${a.saves.size - savesAtStart[i]!} iptables-nft-save seen${i === 0 ? '   target <= 0.2%' : ''}`),
    );
    console.log(`    ratio listening/polling ${f2(used[0]! / Math.max(1, used[1]!))}x (${used[0]} vs ${used[1]} ticks of 10 ms)`);
    stopMemory = true;
    await memory;
    for (const a of agents) {
      const mon = a.monitorKiB.length ? `; its monitor (xtables-monitor) ${f1(middle(a.monitorKiB) / 1024)} MiB, highest ${f1(Math.max(...a.monitorKiB) / 1024)}` : '';
      console.log(`    ${a.label.padEnd(40)} RSS between samples ${f1(middle(a.steadyKiB) / 1024)} MiB (highest ${f1(Math.max(...a.steadyKiB) / 1024)}), target < 64 MiB${mon}`);
    }

    // 2. Latency.
    const lat: { listening: number[]; polling: number[] } = { listening: [], polling: [] };
    const sinceEnd: { listening: number[]; polling: number[] } = { listening: [], polling: [] };
    let expected = rules;
    for (let i = 0; i < LATENCY_CHANGES; i++) {
      const before = Date.now();
      busy.exec('iptables-nft', ['-A', 'INPUT', '-s', `198.51.100.${i + 1}/32`, '-j', 'ACCEPT']);
      const done = Date.now(); // its commit is done by now
      expected++;
      const [l, p] = await Promise.all([arrival(listening.receiver, before, expected, 30_000), arrival(polling.receiver, before, expected, 30_000)]);
      if (l !== undefined) {
        lat.listening.push(l - before);
        sinceEnd.listening.push(l - done);
      }
      if (p !== undefined) {
        lat.polling.push(p - before);
        sinceEnd.polling.push(p - done);
      }
      await delay(Math.max(0, before + LATENCY_SPACING_MS - Date.now()));
    }
    console.log(`  a rule added with iptables-nft (${LATENCY_CHANGES} changes, ${LATENCY_SPACING_MS / 1000} s apart), to the report at the receiver: from before the command started / from its end (its commit done):`);
    for (const name of ['listening', 'polling'] as const) {
      const v = lat[name];
      const e = sinceEnd[name];
      console.log(`    ${name.padEnd(10)} median ${f0ms(middle(v))} / ${f0ms(middle(e))}, highest ${f0ms(Math.max(...v))} / ${f0ms(Math.max(...e))} (${v.length} of ${LATENCY_CHANGES} arrived)${name === 'listening' ? '   target <= 2 s plus the send' : ''}`);
    }

    // 3. Churn.
    const generated = generateIptablesRules(BUSY_NODE);
    const kubeServices = generated.split('\n').filter((l) => l.startsWith('-A KUBE-SERVICES '));
    const churnStart = agents.map((a) => treeTicks(a.pid));
    const monitorsBefore = listening.monitorPids.size;
    const monitorTicksBefore = new Map(listening.monitorTicks);
    const churnSavesBefore = agents.map((a) => a.saves.size);
    stopMemory = false;
    const churnMemory = watchMemory(agents, () => stopMemory);
    const c0 = Date.now();
    let restoreMs = 0;
    for (let tick = 0; tick < CHURN_S; tick++) {
      if (tick === CHURN_S / 2) {
        const r0 = Date.now();
        busy.exec('iptables-nft-restore', [], generated);
        restoreMs = Date.now() - r0;
      } else busy.exec('iptables-nft-restore', ['--noflush'], partialSync(kubeServices, tick));
      await delay(Math.max(0, c0 + (tick + 1) * 1000 - Date.now()));
    }
    await delay(CHURN_TAIL_S * 1000);
    const churnWall = Date.now() - c0;
    const churnUsed = agents.map((a, i) => treeTicks(a.pid) - churnStart[i]!);
    stopMemory = true;
    await churnMemory;
    console.log(`  churn: a partial sync every second for ${CHURN_S} s (KUBE-SERVICES, ${kubeServices.length.toLocaleString('en')} rules, rewritten whole, one service's endpoint moved), one full restore of ${generated.split('\n').length.toLocaleString('en')} lines at ${CHURN_S / 2} s (${f1(restoreMs / 1000)} s), then ${CHURN_TAIL_S} s quiet:`);
    agents.forEach((a, i) => {
      const monitor = i === 0 ? `, of which its monitors at least ${f1([...a.monitorTicks].reduce((sum, [pid, ticks]) => sum + ticks - (monitorTicksBefore.get(pid) ?? 0), 0) / CLOCK_TICKS_PER_S)} CPU-s` : '';
      console.log(`    ${a.label.padEnd(40)} ${f1(churnUsed[i]! / CLOCK_TICKS_PER_S)} CPU-s over ${f0s(churnWall)} (${f2(ofCore(churnUsed[i]!, churnWall))}% of a core)${monitor}; ${a.saves.size - churnSavesBefore[i]!} iptables-nft-save seen`);
    });
    // The final state: what both agents reported last, after the quiet tail.
    const last = agents.map((a) => ipv4Rules(a.receiver.reports.at(-1) ?? { rulesets: [] }));
    console.log(`    last reports: ${last[0] === last[1] ? 'the same final state' : 'DIFFERENT final states'} (${last.map((n) => `${n?.toLocaleString('en')} rules`).join(' and ')})`);
    console.log(`    ratio listening/polling ${f2(churnUsed[0]! / Math.max(1, churnUsed[1]!))}x; monitor processes during churn ${listening.monitorPids.size - monitorsBefore} (restarted after each overflow, at most once per read)`);
  } finally {
    stopMemory = true;
    await memory;
    for (const a of agents) {
      await stopProcess(a.child);
      await a.receiver.stop();
      rmSync(a.hostRoot, { recursive: true, force: true });
    }
  }

  // 4. The signals themselves.
  console.log(`  the change signals, their first 10 s in the ${BUSY_NODE.services.toLocaleString('en')}-service namespace (nothing changes meanwhile):`);
  for (const [cmd, args] of [['xtables-monitor', ['-e']], ['nft', ['monitor']]] as const) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
      console.log(`    ${cmd}: not installed`);
      continue;
    }
    const m = await firstSeconds(busy, cmd, [...args], 10_000);
    console.log(`    ${`${cmd} ${args.join(' ')}`.padEnd(20)} CPU ${Math.round(m.cpuMs).toLocaleString('en').padStart(6)} ms, peak ${f1(m.peakMiB)} MiB`);
  }
}

const f0ms = (ms: number) => (Number.isFinite(ms) ? `${Math.round(ms).toLocaleString('en')} ms` : 'none');
const f0s = (ms: number) => `${Math.round(ms / 1000)} s`;

/** Waits for an agent's first report, for at most a minute. */
async function firstReport(a: Agent): Promise<void> {
  for (const end = Date.now() + 60_000; a.receiver.reports.length === 0; await delay(100)) {
    if (Date.now() > end || a.child.exitCode !== null) throw new Error(`${a.label}: no report (exit ${a.child.exitCode})`);
  }
}
