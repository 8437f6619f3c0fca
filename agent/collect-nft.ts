// nftables tables, to spot Calico's nftables dataplane (table `calico`) and kube-proxy's
// nftables mode (table `kube-proxy`), whose rules iptables-save does not show.
import type { CollectionError, NftTable } from '../protocol/report.js';
import { LIMITS } from '../protocol/limits.js';
import { runCommand } from './exec.js';

export async function collectNftTables(): Promise<{ tables: NftTable[]; errors: CollectionError[] }> {
  const result = await runCommand('nft', ['list', 'tables']);
  if (!result.ok) return { tables: [], errors: [{ source: 'nft', message: result.message }] };
  return { tables: parseNftTables(result.stdout), errors: [] };
}

/** "table ip filter" lines in, {family, name} out; anything else is ignored. */
export function parseNftTables(text: string): NftTable[] {
  const tables: NftTable[] = [];
  for (const line of text.split('\n')) {
    const m = /^table (\S{1,16}) (\S{1,64})$/.exec(line.trim());
    if (m && tables.length < LIMITS.nftTables) tables.push({ family: m[1]!, name: m[2]! });
  }
  return tables;
}
