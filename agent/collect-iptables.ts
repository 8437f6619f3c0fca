// Host iptables rulesets: IPv4 and IPv6, nft and legacy backends (design.md section 3).
import { closeSync, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { Backend, Family, IptablesRuleset } from '../protocol/report.js';
import { listNftBaseChains } from './collect-nft.js';
import { streamCommand } from './exec.js';
import { IptablesSaveParser } from './iptables-save.js';
import { withNftBaseChains } from './nft-base-chains.js';

const SAVE_COMMANDS: Record<Family, Record<'nft' | 'legacy', string>> = {
  ipv4: { nft: 'iptables-nft-save', legacy: 'iptables-legacy-save' },
  ipv6: { nft: 'ip6tables-nft-save', legacy: 'ip6tables-legacy-save' },
};

// The kernel lists the legacy (x_tables) tables it has in these files. Running a legacy save
// where none is listed would make the kernel create the tables it asks for (and may load
// ip_tables): a write to the host, which the agent never does.
const LEGACY_TABLE_LISTS: Record<Family, string> = { ipv4: 'ip_tables_names', ipv6: 'ip6_tables_names' };

/** One save that ran: its command, and the ruleset it printed or why it failed. */
export type SaveOutcome = { source: string; ruleset: IptablesRuleset; error?: undefined } | { source: string; ruleset?: undefined; error: string };

export type SaveBackend = 'nft' | 'legacy';

/**
 * `procNet` is the network namespace's /proc/net: with hostNetwork, the host's. `backends`: the
 * saves to run (agent/run.ts reads the nft backend when it changes, the legacy one every sample).
 */
export async function collectHostIptables(procNet = '/proc/net', backends: readonly SaveBackend[] = ['nft', 'legacy']): Promise<SaveOutcome[]> {
  const jobs: Promise<SaveOutcome | undefined>[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    if (backends.includes('nft')) jobs.push(saveAndParse(family, 'nft'));
    if (!backends.includes('legacy')) continue;
    jobs.push(
      legacyTablesLoaded(path.join(procNet, LEGACY_TABLE_LISTS[family])).then((loaded) =>
        loaded ? saveAndParse(family, 'legacy') : undefined,
      ),
    );
  }
  return (await Promise.all(jobs)).filter((r) => r !== undefined);
}

export async function legacyTablesLoaded(listFile: string): Promise<boolean> {
  try {
    return (await readFile(listFile, 'utf8')).trim() !== '';
  } catch {
    return false; // no x_tables in this kernel, or not readable: either way, do not touch legacy
  }
}

async function saveAndParse(family: Family, backend: 'nft' | 'legacy'): Promise<SaveOutcome> {
  const command = SAVE_COMMANDS[family][backend];
  const parser = new IptablesSaveParser();
  const result = await streamCommand(command, [], (chunk) => parser.push(chunk));
  if (!result.ok) return { source: command, error: result.message };
  const parsed = parser.end();
  // What iptables-nft-save could not list, nft can: the base chains it left out, with their hooks
  // and priorities. Asked only then, so a node without such a table runs no more commands.
  for (const [name, how] of parser.unlisted) {
    const i = parsed.tables.findIndex((t) => t.name === name);
    if (i >= 0) parsed.tables[i] = withNftBaseChains(parsed.tables[i]!, how, await listNftBaseChains(family, name));
  }
  return { source: command, ruleset: { family, backend, source: 'host', ...parsed } };
}

// Below V8's large-object threshold (128 KiB), so that chunks die young instead of piling up in
// the large-object space until a full collection.
const CHUNK_BYTES = 64 * 1024;

/**
 * Parses a dump file as it is read, without holding it whole. Read synchronously: a dump is read
 * once, by the CLI, and libuv's thread pool would add a malloc arena per thread to the RSS.
 */
export function rulesetFromFile(file: string, family: Family, backend: Backend): IptablesRuleset {
  const parser = new IptablesSaveParser();
  const decoder = new StringDecoder('utf8');
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, buffer, 0, CHUNK_BYTES, null)) > 0; ) parser.push(decoder.write(buffer.subarray(0, n)));
    parser.push(decoder.end());
  } finally {
    closeSync(fd);
  }
  return { family, backend, source: 'dump', ...parser.end() };
}
