// nftables tables, to spot Calico's nftables dataplane (table `calico`) and kube-proxy's
// nftables mode (table `kube-proxy`), whose rules iptables-save does not show.
//
// The tables are asked for by name, not listed: nftables 1.0.6 (Debian 12, the agent image) reads
// the whole ruleset to print `nft list tables`, and on a node whose 5,000 services live in
// iptables-nft's tables that costs 3-4 s of CPU and 205 MiB per sample, more than everything else
// the agent does (npm run bench). `nft list table ip calico` for a table that does not exist costs
// 20 ms and 8 MiB. Felix's nftables dataplane and kube-proxy's nftables mode each keep one table of
// that name per IP family (projectcalico/calico felix/nftables; kubernetes pkg/proxy/nftables).
import type { CollectionError, Family, NftTable } from '../protocol/report.js';
import { streamCommand } from './exec.js';
import { NftTableListingParser, type NftListing } from './nft-base-chains.js';

export const WATCHED_NFT_TABLES: readonly NftTable[] = [
  { family: 'ip', name: 'calico' },
  { family: 'ip6', name: 'calico' },
  { family: 'ip', name: 'kube-proxy' },
  { family: 'ip6', name: 'kube-proxy' },
];

// What nft says of a table that is not there ("Error: No such file or directory").
const ABSENT = /No such file or directory/;

/** The watched tables that exist; a table nft cannot be asked about is an error, not absent. */
export async function collectNftTables(): Promise<{ tables: NftTable[]; errors: CollectionError[] }> {
  const answers = await Promise.all(
    // The table's rules are not needed, only whether it is there: its output is dropped as it comes.
    WATCHED_NFT_TABLES.map(async (table) => ({ table, result: await streamCommand('nft', ['list', 'table', table.family, table.name], () => {}) })),
  );
  const tables: NftTable[] = [];
  const errors: CollectionError[] = [];
  for (const { table, result } of answers) {
    if (result.ok) tables.push(table);
    else if (!ABSENT.test(result.message)) errors.push({ source: 'nft', message: result.message });
  }
  // One failing nft (not installed, no permission) fails all four the same way: say it once.
  return { tables, errors: errors.slice(0, 1) };
}

/**
 * Asks again only every `ttlMs`: these tables come and go with a change of dataplane, not between
 * two samples, and four commands a sample would cost more CPU than the rest of the sample.
 */
export function nftTablesEvery(ttlMs: number, collect = collectNftTables, now = Date.now): () => ReturnType<typeof collectNftTables> {
  let last: { at: number; value: Awaited<ReturnType<typeof collectNftTables>> } | undefined;
  return async () => {
    if (last && last.value.errors.length === 0 && now() - last.at < ttlMs) return last.value;
    last = { at: now(), value: await collect() };
    return last.value;
  };
}

/**
 * The base chains of one of iptables' tables as nft shows them (nft-base-chains.ts), for a table
 * iptables-nft-save could not list whole. Read-only, like every nft command the agent runs; the
 * listing streams through the parser and is never held whole.
 */
export async function listNftBaseChains(family: Family, table: string): Promise<NftListing | { error: string }> {
  const parser = new NftTableListingParser();
  const result = await streamCommand('nft', ['-y', 'list', 'table', family === 'ipv6' ? 'ip6' : 'ip', table], (chunk) => parser.push(chunk));
  return result.ok ? parser.end() : { error: result.message };
}
