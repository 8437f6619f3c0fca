// collectReport: reads everything the agent knows about its node and assembles a NodeReport.
// Every source is read-only, has its own time limit, and fails alone: a failed source becomes an
// entry in `errors` and the rest of the report is still sent (design.md section 3).
//
// In two steps, so that `run` can stand between them (source-hysteresis.ts): collectSample reads
// the sources, each result labelled with its source; assembleReport turns a sample into a report.
import { LIMITS, SCHEMA_VERSION } from '../protocol/limits.js';
import type { NodeReport, Backend, CollectionError, Family, IptablesRuleset, MachineIdFile, NftTable } from '../protocol/report.js';
import { collectIllumioMarkers } from './collect-illumio.js';
import { collectHostIptables, rulesetFromFile, type SaveBackend, type SaveOutcome } from './collect-iptables.js';
import { collectNftTables } from './collect-nft.js';
import { COMMAND_TIMEOUT_MS } from './exec.js';
import { kernelModulePaths, nfTablesPresent, readNfTablesState, type KernelModulePaths } from './nf-tables.js';
import { MACHINE_ID_FILES, readMachineIdFile, type MachineIdRead } from './machine-id.js';
import { fitRulesets, printableReport } from './report-limits.js';
import { AGENT_VERSION } from './version.js';

export interface DumpSource {
  family: Family;
  backend: Backend;
  file: string;
}

export interface CollectOptions {
  hostRoot: string;
  nodeName: string;
  cluster?: string;
  /** When set, rulesets come from these files and no iptables or nft command runs. */
  dumps?: DumpSource[];
  procNet?: string;
  /** Where nf-tables.ts looks for nf_tables (tests point these at fixtures). */
  kernelModules?: Partial<KernelModulePaths>;
}

export type IllumioMarkers = NodeReport['illumio'];

/** Where the facts come from: the host, or whatever a test puts in their place. */
export interface Sources {
  machineId(hostRoot: string, file: string): Promise<MachineIdRead>;
  illumio(hostRoot: string): Promise<IllumioMarkers>;
  /** The saves of these backends (both when not given). */
  iptables(procNet: string | undefined, backends?: readonly SaveBackend[]): Promise<SaveOutcome[]>;
  nft(): Promise<{ tables: NftTable[]; errors: CollectionError[] }>;
}

export const HOST_SOURCES: Sources = {
  machineId: readMachineIdFile,
  illumio: collectIllumioMarkers,
  iptables: collectHostIptables,
  nft: collectNftTables,
};

/** One source's part of a sample: what to report, and why the source failed when it did. */
export interface Sourced<T> {
  source: string;
  value: T;
  error?: string;
}

export interface Sample {
  etc: Sourced<MachineIdFile>;
  dbus: Sourced<MachineIdFile>;
  illumio: Sourced<IllumioMarkers>;
  // One per iptables-save run or dump file; no ruleset when it failed.
  rulesets: Sourced<IptablesRuleset | undefined>[];
  nft: Sourced<NftTable[]>;
  // The listener that tells `run` of nftables commits (xtables-monitor.ts): only its failure.
  listener?: Sourced<undefined>;
}

export async function collectReport(opts: CollectOptions, sources: Sources = HOST_SOURCES): Promise<{ report: NodeReport; collectedAnything: boolean }> {
  return assembleReport(await collectSample(opts, sources), opts);
}

/** Every source at once: `collect`, and `run --once`. */
export async function collectSample(opts: CollectOptions, sources: Sources = HOST_SOURCES): Promise<Sample> {
  // Without nf_tables in the kernel no nft-backed command runs (it would load the module): the
  // report has no nft ruleset and no error, as without legacy tables (nf-tables.ts).
  const fromDumps = opts.dumps !== undefined && opts.dumps.length > 0;
  const nftPresent = fromDumps || nfTablesPresent(await readNfTablesState(kernelModulePaths(opts.hostRoot, opts.kernelModules)));
  const [host, rulesets, nft] = await Promise.all([
    collectHostFiles(opts, sources),
    collectRulesets(opts, sources, nftPresent ? undefined : ['legacy']),
    nftPresent ? collectNft(opts, sources) : { source: 'nft', value: [] },
  ]);
  return { ...host, rulesets, nft };
}

/** The host's files: cheap, read every sample. */
export async function collectHostFiles(opts: CollectOptions, sources: Sources = HOST_SOURCES): Promise<Pick<Sample, 'etc' | 'dbus' | 'illumio'>> {
  const [etc, dbus, illumio] = await Promise.all([
    timed('machine-id', sources.machineId(opts.hostRoot, MACHINE_ID_FILES.etc)),
    timed('dbus-machine-id', sources.machineId(opts.hostRoot, MACHINE_ID_FILES.dbus)),
    timed('illumio', sources.illumio(opts.hostRoot)),
  ]);
  const machineId = (source: string, r: Timed<MachineIdRead>): Sourced<MachineIdFile> =>
    r.error !== undefined ? { source, value: { status: 'missing' }, error: r.error } : { source, value: r.value.file, ...(r.value.error ? { error: r.value.error } : {}) };
  return {
    etc: machineId(MACHINE_ID_FILES.etc, etc),
    dbus: machineId(MACHINE_ID_FILES.dbus, dbus),
    illumio: illumio.error === undefined ? { source: 'illumio', value: illumio.value } : { source: 'illumio', value: { hostDataDir: false, serverVen: false }, error: illumio.error },
  };
}

/** The iptables rulesets of these backends (both when not given), or the dumps. */
export async function collectRulesets(opts: CollectOptions, sources: Sources = HOST_SOURCES, backends?: readonly SaveBackend[]): Promise<Sample['rulesets']> {
  const fromDumps = opts.dumps !== undefined && opts.dumps.length > 0;
  const rulesets = fromDumps ? await readDumps(opts.dumps!) : await timed('iptables', sources.iptables(opts.procNet, backends));
  return rulesets.error === undefined
    ? rulesets.value.map((r) => (r.error === undefined ? { source: r.source, value: r.ruleset } : { source: r.source, value: undefined, error: r.error }))
    : [{ source: 'iptables', value: undefined, error: rulesets.error }];
}

/** The nftables tables nodeprep looks for. A dump says nothing about them: no command runs. */
export async function collectNft(opts: CollectOptions, sources: Sources = HOST_SOURCES): Promise<Sample['nft']> {
  const nft = opts.dumps !== undefined && opts.dumps.length > 0 ? NO_NFT_TABLES : await timed('nft', sources.nft());
  return nft.error === undefined
    ? { source: 'nft', value: nft.value.tables, ...(nft.value.errors.length > 0 ? { error: nft.value.errors.map((e) => e.message).join('; ') } : {}) }
    : { source: 'nft', value: [], error: nft.error };
}

/** A sample as NodeReport: every failed source an entry in `errors`, every string printable. */
export function assembleReport(sample: Sample, opts: CollectOptions): { report: NodeReport; collectedAnything: boolean } {
  const errors: CollectionError[] = [];
  const take = <T>(part: Sourced<T>): T => {
    if (part.error !== undefined) errors.push({ source: part.source.slice(0, 64), message: part.error.slice(0, LIMITS.message) });
    return part.value;
  };
  const machineIdFile = (part: Sourced<MachineIdFile>): MachineIdFile => {
    const file = take(part);
    return file.linkTarget !== undefined && file.linkTarget.length > LIMITS.linkTarget ? { ...file, linkTarget: file.linkTarget.slice(0, LIMITS.linkTarget) } : file;
  };
  const report: NodeReport = {
    schemaVersion: SCHEMA_VERSION,
    agent: { version: AGENT_VERSION },
    node: opts.cluster ? { name: opts.nodeName, cluster: opts.cluster } : { name: opts.nodeName },
    collectedAt: new Date().toISOString(),
    machineId: { etc: machineIdFile(sample.etc), dbus: machineIdFile(sample.dbus) },
    iptables: [],
    nftTables: [],
    illumio: take(sample.illumio),
    errors,
  };
  report.iptables = fitRulesets(sample.rulesets.map(take).filter((r) => r !== undefined));
  report.nftTables = take(sample.nft);
  if (sample.listener) take(sample.listener);
  report.errors = errors.slice(0, LIMITS.errors);
  const collectedAnything =
    report.iptables.length > 0 || report.machineId.etc.status !== 'missing' || report.machineId.dbus.status !== 'missing' || report.nftTables.length > 0;
  // Host text (chain names, comments, link targets, stderr) may hold control characters, which
  // the protocol refuses (protocol/text.ts).
  return { report: printableReport(report), collectedAnything };
}

async function readDumps(dumps: DumpSource[]): Promise<Timed<SaveOutcome[]>> {
  const value: SaveOutcome[] = [];
  for (const dump of dumps) {
    const source = `dump ${dump.file}`;
    try {
      value.push({ source, ruleset: rulesetFromFile(dump.file, dump.family, dump.backend) });
    } catch (err) {
      value.push({ source, error: (err as Error).message });
    }
  }
  return { value };
}

type Timed<T> = { value: T; error?: undefined } | { value?: undefined; error: string };

const NO_NFT_TABLES: Timed<{ tables: NftTable[]; errors: CollectionError[] }> = { value: { tables: [], errors: [] } };

/** Bounds one source in time; a source that fails or hangs becomes an error message. */
async function timed<T>(source: string, work: Promise<T>, ms = COMMAND_TIMEOUT_MS + 1_000): Promise<Timed<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Timed<T>>((resolve) => {
    timer = setTimeout(() => resolve({ error: `${source}: no answer within ${ms / 1000} s` }), ms);
  });
  try {
    return await Promise.race([work.then((value) => ({ value })), timeout]);
  } catch (err) {
    return { error: `${source}: ${(err as Error).message}` };
  } finally {
    clearTimeout(timer);
  }
}
