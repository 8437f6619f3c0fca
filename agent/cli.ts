// Command line of nodeprep-agent (design.md section 3). Every option also reads an environment
// variable, so the DaemonSet configures the agent with env and a person with flags.
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { Backend, Family } from '../protocol/report.js';
import { CLUSTER_NAME_RULE, NODE_NAME_RULE, isClusterName, isNodeName } from '../protocol/names.js';
import type { DumpSource } from './collect.js';
import type { KernelModulePaths } from './nf-tables.js';

export const USAGE = `usage: nodeprep-agent <collect|run> [options]

  collect                 collect once and print the report (JSON) on stdout; sends nothing
  run                     read the host, and send to the aggregator when the facts change

options (environment variable in brackets):
  --host-root DIR         where the host's filesystem is mounted [HOST_ROOT] (default /host)
  --node-name NAME        this node's name [NODE_NAME] (required for run; collect: hostname)
  --cluster NAME          cluster name [CLUSTER_NAME]
  --from-dump [ipv4|ipv6][/legacy|/nft]=FILE
                          read iptables-save text from FILE instead of running iptables
                          (repeatable; without a prefix: ipv4, backend unknown)
  --proc-net DIR          the network namespace's /proc/net [PROC_NET] (default /proc/net)
run only:
  --aggregator-url URL    where to send reports [AGGREGATOR_URL]
  --token-file FILE       bearer token, re-read when it changes [AGGREGATOR_TOKEN_FILE]
  --ca-file FILE          CA bundle for an https aggregator [AGGREGATOR_CA_FILE]
  --sample-interval S     seconds between samples of the machine ID files and the legacy
                          iptables backend; the nftables rulesets are read at most this
                          often [SAMPLE_INTERVAL] (default 15)
  --read-rulesets WHEN    on-change: read the nftables rulesets when the kernel says they
                          changed (xtables-monitor), every-sample: at every sample
                          [READ_RULESETS] (default on-change)
  --full-read-interval S  read everything at least this often, changed or not
                          [FULL_READ_INTERVAL] (default 1800)
  --heartbeat-interval S  send at least this often, changed or not [HEARTBEAT_INTERVAL] (default 60)
  --health-file FILE      touched after every sample, for a liveness probe [HEALTH_FILE]
  --once                  send one report and exit (non-zero if it was not delivered)
  --log-level LEVEL       fatal, error, warn, info, debug, trace or silent [LOG_LEVEL] (default info)
`;

// pino's levels (pino.levels.values, and silent). pino throws on any other, with a stack trace;
// the CLI says so as it says any other bad value. Listed here: the CLI does not load pino.
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface AgentCommand {
  command: 'collect' | 'run';
  hostRoot: string;
  nodeName?: string;
  cluster?: string;
  dumps: DumpSource[];
  procNet: string;
  // Where nf-tables.ts looks for nf_tables; set by tests only (the defaults are the host's).
  kernelModules?: Partial<KernelModulePaths>;
  aggregatorUrl?: string;
  tokenFile?: string;
  caFile?: string;
  sampleIntervalS: number;
  readRulesets: ReadRulesets;
  fullReadIntervalS: number;
  heartbeatIntervalS: number;
  healthFile?: string;
  once: boolean;
  logLevel: string;
}

export const READ_RULESETS = ['on-change', 'every-sample'] as const;
export type ReadRulesets = (typeof READ_RULESETS)[number];

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseAgentArgs(argv: string[], env: NodeJS.ProcessEnv): AgentCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'host-root': { type: 'string' },
        'node-name': { type: 'string' },
        cluster: { type: 'string' },
        'from-dump': { type: 'string', multiple: true },
        'proc-net': { type: 'string' },
        'aggregator-url': { type: 'string' },
        'token-file': { type: 'string' },
        'ca-file': { type: 'string' },
        'sample-interval': { type: 'string' },
        'read-rulesets': { type: 'string' },
        'full-read-interval': { type: 'string' },
        'heartbeat-interval': { type: 'string' },
        'health-file': { type: 'string' },
        once: { type: 'boolean' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values: v, positionals } = parsed;
  if (v.help) throw new UsageError('');
  const command = positionals[0];
  if (command !== 'collect' && command !== 'run') {
    throw new UsageError(command ? `unknown command "${command}"` : 'a command is required');
  }
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);

  const opt = (flag: string | undefined, name: string) => nonEmpty(flag) ?? nonEmpty(env[name]);
  const out: AgentCommand = {
    command,
    hostRoot: opt(v['host-root'], 'HOST_ROOT') ?? '/host',
    nodeName: opt(v['node-name'], 'NODE_NAME'),
    cluster: opt(v.cluster, 'CLUSTER_NAME'),
    dumps: (v['from-dump'] ?? []).map(parseDumpSpec),
    procNet: opt(v['proc-net'], 'PROC_NET') ?? '/proc/net',
    aggregatorUrl: opt(v['aggregator-url'], 'AGGREGATOR_URL'),
    tokenFile: opt(v['token-file'], 'AGGREGATOR_TOKEN_FILE'),
    caFile: opt(v['ca-file'], 'AGGREGATOR_CA_FILE'),
    sampleIntervalS: seconds('--sample-interval', opt(v['sample-interval'], 'SAMPLE_INTERVAL'), 15),
    readRulesets: (opt(v['read-rulesets'], 'READ_RULESETS') ?? 'on-change') as ReadRulesets,
    fullReadIntervalS: seconds('--full-read-interval', opt(v['full-read-interval'], 'FULL_READ_INTERVAL'), 1800),
    heartbeatIntervalS: seconds('--heartbeat-interval', opt(v['heartbeat-interval'], 'HEARTBEAT_INTERVAL'), 60),
    healthFile: opt(v['health-file'], 'HEALTH_FILE'),
    once: v.once ?? false,
    logLevel: opt(v['log-level'], 'LOG_LEVEL') ?? 'info',
  };
  if (!(READ_RULESETS as readonly string[]).includes(out.readRulesets)) {
    throw new UsageError(`--read-rulesets: "${out.readRulesets}" is not one of ${READ_RULESETS.join(', ')}`);
  }
  if (!(LOG_LEVELS as readonly string[]).includes(out.logLevel)) {
    throw new UsageError(`--log-level: "${out.logLevel}" is not a level; use one of ${LOG_LEVELS.join(', ')}`);
  }
  // Names go into every report and must be what Kubernetes allows (protocol/names.ts): say so
  // now, not as a 400 from the aggregator at every sample.
  if (out.nodeName !== undefined && !isNodeName(out.nodeName)) throw new UsageError(`--node-name: "${out.nodeName}" must be ${NODE_NAME_RULE}`);
  if (out.cluster !== undefined && !isClusterName(out.cluster)) throw new UsageError(`--cluster: "${out.cluster}" must be ${CLUSTER_NAME_RULE}`);
  if (command === 'run') {
    if (!out.nodeName) throw new UsageError('run needs --node-name (or NODE_NAME, from the downward API)');
    if (!out.aggregatorUrl) throw new UsageError('run needs --aggregator-url (or AGGREGATOR_URL)');
    let url: URL;
    try {
      url = new URL(out.aggregatorUrl);
    } catch {
      throw new UsageError(`--aggregator-url: "${out.aggregatorUrl}" is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('--aggregator-url must be http or https');
  }
  return out;
}

const DUMP_PREFIX = /^(ipv4|ipv6)?(?:\/(legacy|nft))?=(.+)$/;

/** "[ipv4|ipv6][/legacy|/nft]=FILE"; a bare FILE is ipv4 with an unknown backend. */
export function parseDumpSpec(spec: string): DumpSource {
  const m = DUMP_PREFIX.exec(spec);
  if (!m) {
    // "ip4=x" or "ipv4/iptables=x" is a mistyped prefix, not a file name: say so.
    const prefix = spec.split('=', 1)[0]!;
    if (spec.includes('=') && /^[a-z0-9]+(\/[a-z0-9]*)?$|^\/[a-z0-9]*$/i.test(prefix)) {
      throw new UsageError(`--from-dump: "${prefix}" is not a prefix; use [ipv4|ipv6][/legacy|/nft]=FILE`);
    }
    return { family: 'ipv4', backend: 'unknown', file: spec };
  }
  return { family: (m[1] ?? 'ipv4') as Family, backend: (m[2] ?? 'unknown') as Backend, file: m[3]! };
}

function seconds(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag}: "${raw}" is not a positive number of seconds`);
  return n;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

/** This machine's hostname as a Kubernetes node name (lower case, no "_"), as the kubelet derives it. */
export function hostNodeName(hostname = os.hostname()): string {
  return hostname.toLowerCase().replace(/[^a-z0-9.-]/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '').slice(0, 253) || 'localhost';
}
