// nodeprep-agent run: read the host, and send when the facts changed or a heartbeat is due
// (design.md sections 3 and 10). The machine ID files and the legacy iptables backend are read
// every sample; the nftables rulesets when the kernel says they changed (xtables-monitor.ts), at
// most once per sample interval, and everything at least every --full-read-interval
// (read-schedule.ts). While the aggregator is away only the latest report is kept; it is sent as
// soon as the aggregator answers again. One log line per change of state, never one per sample,
// and never a report or a ruleset.
import { writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import type { NodeReport } from '../protocol/report.js';
import type { AgentCommand } from './cli.js';
import type { SaveBackend } from './collect-iptables.js';
import { assembleReport, collectHostFiles, collectNft, collectRulesets, collectSample, HOST_SOURCES, type CollectOptions, type Sources } from './collect.js';
import { killRunningCommands } from './exec.js';
import { HeadWatch, HeadWriters } from './head-watch.js';
import { LatestSample } from './latest-sample.js';
import { kernelModulePaths, nfTablesPresent, readNfTablesState, type NfTablesState } from './nf-tables.js';
import { ReadSchedule, type Reads } from './read-schedule.js';
import { createSender, type SendResult } from './sender.js';
import { SourceHysteresis } from './source-hysteresis.js';
import { XtablesMonitor, type MonitorEvents, type MonitorOptions } from './xtables-monitor.js';

// A head change stays in the reports this long, so that a fight between Felix (which re-asserts
// its rules every IptablesRefreshInterval, 90-180 s) and another product shows between flips.
const FIGHT_WINDOW_MS = 10 * 60_000;
// After SIGTERM, whatever is still running (a collection waiting on iptables), the agent is gone
// within this long: well inside Kubernetes' default grace period of 30 s.
const FORCED_EXIT_MS = 900;
// After a commit, how long to let the rest of a burst arrive (iptables-restore commits table by
// table) before reading: a small part of the 2 s a change may take to reach the aggregator
// (design.md section 8), most of which iptables-nft-save takes on a busy node.
const SETTLE_MS = 100;
// The nftables tables nodeprep looks for come and go with a change of dataplane: without word of
// one from the listener, they are asked about at most this often (collect-nft.ts says what it costs).
const NFT_TABLES_MS = 60_000;
// How long the first read, and a read after an overflow, wait for the listener to subscribe.
const LISTEN_WAIT_MS = 2_000;
// An aggregator that refuses the writers' names (it predates HeadChange.by) is offered them again
// after this long: it may have been upgraded meanwhile.
const WRITERS_RETRY_MS = 60 * 60_000;
const WRITERS_REFUSED = /headChanges\.\d+\.by: unknown field/;

/** What tells the agent of nftables commits: xtables-monitor.ts, or a test's stand-in. */
export interface Listener {
  readonly listening: boolean;
  start(): void;
  ensureListening(timeoutMs: number): Promise<boolean>;
  stop(): Promise<void>;
  kill(): void;
}

export interface RunDeps {
  // Where samples come from; tests put failing sources here.
  sources?: Sources;
  // Stops the agent as SIGTERM does, without a forced exit (tests run the agent in-process).
  signal?: AbortSignal;
  // The listener. By default xtables-monitor with --read-rulesets on-change; none with a test's
  // `sources` (the real monitor would watch the host, not the fakes) or with dumps.
  listener?: (events: MonitorEvents, opts: MonitorOptions) => Listener;
}

export async function runAgent(cmd: AgentCommand, log: Logger = pino({ level: cmd.logLevel, base: { node: cmd.nodeName } }), deps: RunDeps = {}): Promise<number> {
  const sampleMs = cmd.sampleIntervalS * 1000;
  const sender = createSender({
    url: cmd.aggregatorUrl!,
    tokenFile: cmd.tokenFile,
    caFile: cmd.caFile,
    // Retries are for a blip; a longer outage is bridged by the next samples, each of which
    // tries again with the latest report.
    backoffBaseMs: clamp(sampleMs / 8, 50, 1_000),
    backoffMaxMs: clamp(sampleMs, 200, 15_000),
    retries: cmd.once ? 4 : 2,
  });
  const options: CollectOptions = { hostRoot: cmd.hostRoot, nodeName: cmd.nodeName!, cluster: cmd.cluster, dumps: cmd.dumps, procNet: cmd.procNet, kernelModules: cmd.kernelModules };
  const sources = deps.sources ?? HOST_SOURCES;
  const hysteresis = new SourceHysteresis();
  const stop = new AbortController();
  let listener: Listener | undefined;
  let finished = false;
  const onSignal = (signal: 'SIGTERM' | 'SIGINT') => {
    if (stop.signal.aborted) return;
    log.info({ signal }, 'stopping');
    stop.abort();
    // A stop that has to be forced is not a clean one, and says so: exit 128 + the signal's
    // number (143 for SIGTERM), as a shell reports a process that signal ended, so that a
    // supervisor (and the tests) can tell it from the 0 of a clean stop. The commands still
    // running are killed first: none outlives the agent. The timer holds nothing open: a clean
    // stop exits as soon as the loop is done, before it fires.
    setTimeout(() => {
      if (finished) process.exit(); // done, and something else kept the process: exitCode stands
      log.warn({ signal, afterMs: FORCED_EXIT_MS }, 'forced exit: a sample was still running');
      killRunningCommands();
      listener?.kill();
      process.exit(128 + constants.signals[signal]);
    }, FORCED_EXIT_MS).unref();
  };
  const onSigterm = () => onSignal('SIGTERM');
  const onSigint = () => onSignal('SIGINT');
  if (deps.signal) deps.signal.addEventListener('abort', () => stop.abort(), { once: true });
  else {
    process.once('SIGTERM', onSigterm);
    process.once('SIGINT', onSigint);
  }

  let lastFingerprint = '';
  let lastSentAt = 0;
  let pending = false; // the latest report has not been delivered
  let healthy = true; // the health file could be written last time
  let state: DeliveryState = 'unknown';
  let writersRefusedUntil = 0;

  /** Sends when due; true when the run should end (--once, or stopped mid-send). */
  const sendIfDue = async (report: NodeReport, started: number): Promise<boolean> => {
    const fingerprint = factsOf(report);
    const due = cmd.once || pending || fingerprint !== lastFingerprint || started - lastSentAt >= cmd.heartbeatIntervalS * 1000;
    if (!due) return false;
    const result = await deliver(report);
    if (result.outcome === 'aborted') return true;
    state = logTransition(log, state, result);
    pending = result.outcome !== 'delivered';
    if (!pending) {
      lastFingerprint = fingerprint;
      lastSentAt = started;
    }
    return cmd.once;
  };

  /** Sends, without the writers' names where the aggregator is older than they are. */
  const deliver = async (report: NodeReport): Promise<SendResult> => {
    const named = report.headChanges?.some((c) => c.by !== undefined) ?? false;
    if (!named || Date.now() >= writersRefusedUntil) {
      const result = await sender.send(report, stop.signal);
      if (!named || result.outcome !== 'rejected' || result.status !== 400 || !WRITERS_REFUSED.test(result.message)) return result;
      if (writersRefusedUntil === 0) log.warn({ retryAfterMinutes: WRITERS_RETRY_MS / 60_000 }, 'the aggregator predates the writers\' names of head changes; sending without them');
      writersRefusedUntil = Date.now() + WRITERS_RETRY_MS;
    }
    return sender.send(withoutWriters(report), stop.signal);
  };

  try {
    if (cmd.once) {
      const started = Date.now();
      const { report } = assembleReport(hysteresis.smooth(await collectSample(options, sources)), options);
      if (cmd.healthFile) await touch(cmd.healthFile, log, healthy);
      await sendIfDue(report, started);
      return pending ? 1 : 0;
    }

    const fromDumps = cmd.dumps.length > 0;
    const makeListener = deps.listener ?? (deps.sources || fromDumps || cmd.readRulesets !== 'on-change' ? undefined : (events: MonitorEvents, opts: MonitorOptions) => new XtablesMonitor(events, opts));
    const schedule = new ReadSchedule({ sampleMs, fullReadMs: cmd.fullReadIntervalS * 1000, settleMs: SETTLE_MS, tablesMs: NFT_TABLES_MS });
    const writers = new HeadWriters();
    const latest = new LatestSample(hysteresis);
    const watch = new HeadWatch(Math.max(FIGHT_WINDOW_MS, cmd.heartbeatIntervalS * 3000));
    const wake = new Wake();
    let listenerState: 'never' | 'listening' | 'down' = 'never';
    const events: MonitorEvents = 
      {
        commit: (commit) => {
          writers.record(commit);
          schedule.changed(Date.now(), commit.watchedTable);
          wake.ring();
        },
        missed: (reason) => {
          log.debug({ reason }, 'the rulesets may have changed unseen; reading them again');
          schedule.missed(Date.now());
          wake.ring();
        },
        listening: () => {
          if (listenerState !== 'listening') log.info({ was: listenerState }, 'listening for ruleset changes');
          listenerState = 'listening';
          latest.listenerUp();
          schedule.missed(Date.now());
          wake.ring();
        },
        failed: (message) => {
          if (listenerState !== 'down') log.warn({ reason: message, sampleIntervalS: cmd.sampleIntervalS }, 'ruleset listener stopped; reading the rulesets every sample until it is back');
          listenerState = 'down';
          latest.listenerFailed(`${message}; reading the rulesets every ${cmd.sampleIntervalS} s meanwhile`);
          wake.ring();
        },
      };
    log.info({ aggregator: cmd.aggregatorUrl, sampleIntervalS: cmd.sampleIntervalS, heartbeatIntervalS: cmd.heartbeatIntervalS, readRulesets: makeListener ? 'on-change' : 'every-sample' }, 'agent started');
    // nf_tables is looked for at every sample, without netlink (nf-tables.ts): while it is not in
    // the kernel no nft-backed command runs and no listener starts, as the legacy saves wait for
    // the legacy tables. It may come later (kube-proxy or Calico loading it): the listener starts then.
    const kernelPaths = kernelModulePaths(cmd.hostRoot, cmd.kernelModules);
    let nfTables: NfTablesState | undefined;
    const nftPresent = async (): Promise<boolean> => {
      if (fromDumps) return true; // no command runs: the dumps stand for the host
      const state = await readNfTablesState(kernelPaths);
      if (state !== nfTables && (nfTables !== undefined || !nfTablesPresent(state))) {
        log.info({ nfTables: state, was: nfTables ?? 'unknown' }, nfTablesPresent(state) ? 'nf_tables in the kernel; reading the nft backend' : 'nf_tables not in the kernel; not reading the nft backend');
      }
      nfTables = state;
      if (!nfTablesPresent(state)) return false;
      if (!listener && makeListener) {
        listener = makeListener(events, { overflowHoldMs: sampleMs });
        // The first read comes after the listener subscribed: no commit falls between the two.
        listener.start();
        await listener.ensureListening(LISTEN_WAIT_MS);
      }
      return true;
    };

    while (!stop.signal.aborted) {
      const nft = await nftPresent();
      if (stop.signal.aborted) break;
      const started = Date.now();
      const due = schedule.due(started, listener?.listening ?? false);
      const reads = nft ? due : { ...due, nft: false, nftTables: false };
      if (reads.host || reads.nft || reads.legacy || reads.nftTables) {
        // A listener held after an overflow starts again before the read, not after it.
        if (reads.nft && listener && !listener.listening) await listener.ensureListening(LISTEN_WAIT_MS);
        const read = await readSources(reads, options, sources);
        if (stop.signal.aborted) break;
        schedule.read(reads, started, read.nftTables?.error !== undefined);
        if (read.host) latest.setHost(read.host);
        if (read.rulesets) latest.setRulesets(read.backends, read.rulesets);
        if (read.nftTables) latest.setNftTables(read.nftTables);
        if (!nft) {
          // As for legacy without tables: no nft ruleset in the report, and no error.
          latest.setRulesets(['nft'], []);
          latest.setNftTables({ source: 'nft', value: [] });
        }
        if (reads.host && listener?.listening) latest.listenerUp();
        const { report } = assembleReport(latest.sample(), options);
        const headChanges = read.rulesets ? watch.observe(report, started, writers.writerOf) : watch.recent(started);
        if (headChanges.length) report.headChanges = headChanges;
        if (reads.host && cmd.healthFile) healthy = await touch(cmd.healthFile, log, healthy);
        if (await sendIfDue(report, started)) break;
        // A read's garbage (megabytes of iptables-save text) is collected now, while the agent
        // waits, instead of piling up until V8's next heap limit: about 4 MiB less resident, and
        // steady, for about 15 ms of CPU (npm run bench), spent only when rulesets were read.
        // gc exists when node runs with --expose-gc, as agent/main.ts's #! line and the image's
        // ENTRYPOINT have it.
        if (read.rulesets) (globalThis as { gc?: () => void }).gc?.();
      }
      // Until something is due, a commit is seen, or SIGTERM aborts the wait.
      await wake.sleep(schedule.nextAt(listener?.listening ?? false) - Date.now(), stop.signal);
    }
    return 0;
  } finally {
    finished = true;
    process.off('SIGTERM', onSigterm);
    process.off('SIGINT', onSigint);
    await listener?.stop();
    await sender.close();
  }
}

/** Reads what is due, at once. */
async function readSources(reads: Reads, options: CollectOptions, sources: Sources) {
  const backends: SaveBackend[] = [...(reads.nft ? (['nft'] as const) : []), ...(reads.legacy ? (['legacy'] as const) : [])];
  const [host, rulesets, nftTables] = await Promise.all([
    reads.host ? collectHostFiles(options, sources) : undefined,
    backends.length > 0 ? collectRulesets(options, sources, backends) : undefined,
    reads.nftTables ? collectNft(options, sources) : undefined,
  ]);
  return { host, backends, rulesets, nftTables };
}

/** A wait that a commit can cut short; a ring while nobody waits ends the next wait at once. */
class Wake {
  private rung = false;
  private resolve: (() => void) | undefined;

  ring(): void {
    if (this.resolve) this.resolve();
    else this.rung = true;
  }

  async sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (this.rung || ms <= 0 || signal.aborted) {
      this.rung = false;
      return;
    }
    const rung = new Promise<void>((resolve) => (this.resolve = resolve));
    const timer = new AbortController();
    await Promise.race([rung, delay(ms, undefined, { signal: AbortSignal.any([signal, timer.signal]) }).catch(() => {})]);
    timer.abort();
    this.resolve = undefined;
  }
}

/** The report as an aggregator that predates HeadChange.by accepts it. */
function withoutWriters(report: NodeReport): NodeReport {
  return report.headChanges ? { ...report, headChanges: report.headChanges.map(({ by: _, ...change }) => change) } : report;
}

/** The report without its timestamp: two samples with the same facts need not both be sent. */
export function factsOf(report: NodeReport): string {
  const { collectedAt: _, ...facts } = report;
  return JSON.stringify(facts);
}

type DeliveryState = 'unknown' | 'delivering' | 'unreachable' | 'rejected' | 'untrusted';

/** One log line per change of state: a dead aggregator or a bad certificate is not logged per sample. */
function logTransition(log: Logger, state: DeliveryState, result: Exclude<SendResult, { outcome: 'aborted' }>): DeliveryState {
  switch (result.outcome) {
    case 'delivered':
      if (state === 'unknown') log.info({ status: result.status }, 'first report delivered');
      else if (state !== 'delivering') log.info({ status: result.status, was: state }, 'aggregator reachable again');
      return 'delivering';
    case 'rejected':
      if (state !== 'rejected') log.error({ status: result.status, reason: result.message }, 'aggregator rejected the report');
      return 'rejected';
    case 'untrusted':
      // A configuration error, not an outage: the CA bundle (--ca-file) or the aggregator's
      // certificate must change. Tried again at every sample, without fast retries.
      if (state !== 'untrusted') log.error({ reason: result.reason, message: result.message }, 'certificate rejected; keeping the latest report');
      return 'untrusted';
    case 'unreachable':
      if (state !== 'unreachable') log.warn({ reason: result.message, attempts: result.attempts }, 'aggregator unreachable; keeping the latest report');
      return 'unreachable';
  }
}

async function touch(file: string, log: Logger, wasHealthy: boolean): Promise<boolean> {
  try {
    await writeFile(file, `${new Date().toISOString()}\n`);
    return true;
  } catch (err) {
    if (wasHealthy) log.warn({ file, err: (err as Error).message }, 'cannot write the health file');
    return false;
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}
