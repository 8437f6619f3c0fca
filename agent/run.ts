// nodeprep-agent run: sample, and send when the facts changed or a heartbeat is due
// (design.md section 3). While the aggregator is away only the latest report is kept; it is
// sent as soon as the aggregator answers again. One log line per change of state, never one per
// sample, and never a report or a ruleset.
import { writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import type { NodeReport } from '../protocol/report.js';
import type { AgentCommand } from './cli.js';
import { assembleReport, collectSample, HOST_SOURCES, type Sources } from './collect.js';
import { killRunningCommands } from './exec.js';
import { HeadWatch } from './head-watch.js';
import { createSender, type SendResult } from './sender.js';
import { nftTablesEvery } from './collect-nft.js';
import { SourceHysteresis } from './source-hysteresis.js';

// A head change stays in the reports this long, so that a fight between Felix (which re-asserts
// its rules every IptablesRefreshInterval, 90-180 s) and another product shows between flips.
const FIGHT_WINDOW_MS = 10 * 60_000;
// After SIGTERM, whatever is still running (a collection waiting on iptables), the agent is gone
// within this long: well inside Kubernetes' default grace period of 30 s.
const FORCED_EXIT_MS = 900;

export interface RunDeps {
  // Where samples come from; tests put failing sources here.
  sources?: Sources;
  // Stops the agent as SIGTERM does, without a forced exit (tests run the agent in-process).
  signal?: AbortSignal;
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
  const watch = new HeadWatch(Math.max(FIGHT_WINDOW_MS, cmd.heartbeatIntervalS * 3000));
  const hysteresis = new SourceHysteresis();
  // The nftables tables are asked about once a minute, not every sample (collect-nft.ts).
  const sources = deps.sources ?? { ...HOST_SOURCES, nft: nftTablesEvery(60_000) };
  const stop = new AbortController();
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

  log.info({ aggregator: cmd.aggregatorUrl, sampleIntervalS: cmd.sampleIntervalS, heartbeatIntervalS: cmd.heartbeatIntervalS }, 'agent started');
  let lastFingerprint = '';
  let lastSentAt = 0;
  let pending = false; // the latest report has not been delivered
  let healthy = true; // the health file could be written last time
  let state: DeliveryState = 'unknown';

  try {
    while (!stop.signal.aborted) {
      const started = Date.now();
      const options = { hostRoot: cmd.hostRoot, nodeName: cmd.nodeName!, cluster: cmd.cluster, dumps: cmd.dumps, procNet: cmd.procNet };
      const { report } = assembleReport(hysteresis.smooth(await collectSample(options, sources)), options);
      if (stop.signal.aborted) break;
      const headChanges = watch.observe(report, started);
      if (headChanges.length) report.headChanges = headChanges;
      if (cmd.healthFile) healthy = await touch(cmd.healthFile, log, healthy);

      const fingerprint = factsOf(report);
      const due = cmd.once || pending || fingerprint !== lastFingerprint || started - lastSentAt >= cmd.heartbeatIntervalS * 1000;
      if (due) {
        const result = await sender.send(report, stop.signal);
        if (result.outcome === 'aborted') break;
        state = logTransition(log, state, result);
        pending = result.outcome !== 'delivered';
        if (!pending) {
          lastFingerprint = fingerprint;
          lastSentAt = started;
        }
        if (cmd.once) return pending ? 1 : 0;
      }
      // The sample's garbage (megabytes of iptables-save text) is collected now, while the agent
      // sleeps, instead of piling up until V8's next heap limit: about 4 MiB less resident, and
      // steady, for about 15 ms of CPU a sample (npm run bench). gc exists when node runs with
      // --expose-gc, as agent/main.ts's #! line and the image's ENTRYPOINT have it.
      (globalThis as { gc?: () => void }).gc?.();
      // Until the next sample, or until SIGTERM aborts the wait.
      await delay(Math.max(0, sampleMs - (Date.now() - started)), undefined, { signal: stop.signal }).catch(() => {});
    }
    return 0;
  } finally {
    finished = true;
    process.off('SIGTERM', onSigterm);
    process.off('SIGINT', onSigint);
    await sender.close();
  }
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
