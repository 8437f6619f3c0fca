// collectReport: reads everything the agent knows about its node and assembles NodeReport v1.
// Every source is read-only, has its own time limit, and fails alone: a failed source becomes an
// entry in `errors` and the rest of the report is still sent (design.md section 3).
import { LIMITS, SCHEMA_VERSION } from '../protocol/limits.js';
import type {
  NodeReport,
  Backend,
  CollectionError,
  Family,
  IptablesRuleset,
  MachineIdFile,
  NftTable,
} from '../protocol/report.js';
import { collectIllumioMarkers } from './collect-illumio.js';
import { collectHostIptables, rulesetFromFile } from './collect-iptables.js';
import { collectNftTables } from './collect-nft.js';
import { COMMAND_TIMEOUT_MS } from './exec.js';
import { MACHINE_ID_FILES, readMachineIdFile } from './machine-id.js';
import { fitRulesets } from './report-limits.js';
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
}

// A dump says nothing about nftables, and the agent then runs no command at all.
const NO_NFT_TABLES: Timed<{ tables: NftTable[]; errors: CollectionError[] }> = { value: { tables: [], errors: [] } };

export async function collectReport(opts: CollectOptions): Promise<{ report: NodeReport; collectedAnything: boolean }> {
  const errors: CollectionError[] = [];
  const fromDumps = opts.dumps !== undefined && opts.dumps.length > 0;

  const [etc, dbus, illumio, iptables, nft] = await Promise.all([
    timed('machine-id', readMachineIdFile(opts.hostRoot, MACHINE_ID_FILES.etc)),
    timed('dbus-machine-id', readMachineIdFile(opts.hostRoot, MACHINE_ID_FILES.dbus)),
    timed('illumio', collectIllumioMarkers(opts.hostRoot)),
    fromDumps ? readDumps(opts.dumps!) : timed('iptables', collectHostIptables(opts.procNet)),
    fromDumps ? NO_NFT_TABLES : timed('nft', collectNftTables()),
  ]);

  const machineId = (source: string, r: typeof etc): MachineIdFile => {
    if (r.error !== undefined) {
      errors.push({ source, message: r.error });
      return { status: 'missing' };
    }
    if (r.value.error) errors.push({ source, message: r.value.error });
    return r.value.file;
  };
  const report: NodeReport = {
    schemaVersion: SCHEMA_VERSION,
    agent: { version: AGENT_VERSION },
    node: opts.cluster ? { name: opts.nodeName, cluster: opts.cluster } : { name: opts.nodeName },
    collectedAt: new Date().toISOString(),
    machineId: { etc: machineId(MACHINE_ID_FILES.etc, etc), dbus: machineId(MACHINE_ID_FILES.dbus, dbus) },
    iptables: [],
    nftTables: [],
    illumio: { hostDataDir: false, serverVen: false },
    errors,
  };
  if (illumio.error === undefined) report.illumio = illumio.value;
  else errors.push({ source: 'illumio', message: illumio.error });
  if (iptables.error === undefined) {
    report.iptables = fitRulesets(iptables.value.rulesets);
    errors.push(...iptables.value.errors);
  } else errors.push({ source: 'iptables', message: iptables.error });
  if (nft.error === undefined) {
    report.nftTables = nft.value.tables;
    errors.push(...nft.value.errors);
  } else errors.push({ source: 'nft', message: nft.error });

  report.errors = errors.slice(0, LIMITS.errors).map((e) => ({ source: e.source.slice(0, 64), message: e.message.slice(0, LIMITS.message) }));
  const collectedAnything =
    report.iptables.length > 0 || report.machineId.etc.status !== 'missing' || report.machineId.dbus.status !== 'missing' || report.nftTables.length > 0;
  return { report, collectedAnything };
}

async function readDumps(dumps: DumpSource[]): Promise<Timed<{ rulesets: IptablesRuleset[]; errors: CollectionError[] }>> {
  const rulesets: IptablesRuleset[] = [];
  const errors: CollectionError[] = [];
  for (const dump of dumps) {
    try {
      rulesets.push(await rulesetFromFile(dump.file, dump.family, dump.backend));
    } catch (err) {
      errors.push({ source: `dump ${dump.file}`, message: (err as Error).message });
    }
  }
  return { value: { rulesets, errors } };
}

type Timed<T> = { value: T; error?: undefined } | { value?: undefined; error: string };

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

