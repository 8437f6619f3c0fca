// What nft shows of a table iptables-nft-save could not list whole: its base chains, each with
// its hook and priority, and what that says of the table iptables-nft-save printed.
//
// iptables-nft keeps, for each hook of one of its tables, only a base chain with its own name,
// type and priority (iptables nft-cache.c, nft_cache_add_base_chain); any other base chain there
// (`nft add chain ip filter myinput { type filter hook input priority 5; }`) is left out of
// iptables-nft-save's listing, which still declares INPUT, FORWARD and OUTPUT, existing or not.
// The kernel runs every base chain of a hook in priority order, so what iptables shows is not
// who comes first. nft shows them all.
//
// The listing is the text of `nft -y list table <family> <name>` (-y: priorities as numbers, not
// `filter + 5`), read line by line as it streams: a table iptables also writes to may hold a
// busy node's rules. nft writes a table as
//   table ip filter {
//   <tab>chain myinput {
//   <tab><tab>comment "..."                                   (optional)
//   <tab><tab>type filter hook input priority 5; policy accept;
//   <tab><tab>accept                                          (one line per rule)
//   <tab>}
// Sets, maps and the lines their elements wrap onto sit at other depths or outside chains.
import { LIMITS } from '../protocol/limits.js';
import type { IptablesTable, NftBaseChain } from '../protocol/report.js';
import { printable } from '../protocol/text.js';
import { unlistedProblem, type UnlistedTable } from './iptables-save.js';

const CHAIN_OPEN = /^\tchain (.+) \{$/;
const BASE_CHAIN = /^\t\ttype (filter|nat|route) hook (prerouting|input|forward|output|postrouting) priority (-?\d{1,10});(?: policy (accept|drop);)?/;
// Any other base chain: a hook or type the protocol does not carry (another family's).
const OTHER_BASE_CHAIN = /^\t\ttype \S+ hook /;

export interface NftListing {
  chains: NftBaseChain[];
  // Base chains beyond LIMITS.nftBaseChainsPerTable, or of a kind the protocol does not carry.
  omitted: number;
}

/** Reads `nft -y list table` text in chunks; end() gives the table's base chains. */
export class NftTableListingParser {
  private readonly chains: NftBaseChain[] = [];
  private omitted = 0;
  private chain: { name: string; base?: NftBaseChain } | undefined;
  private carry = '';

  push(chunk: string): void {
    const text = this.carry + chunk;
    const last = text.lastIndexOf('\n');
    if (last === -1) {
      this.carry = text;
      return;
    }
    let start = 0;
    while (start <= last) {
      const end = text.indexOf('\n', start);
      this.line(text.slice(start, end));
      start = end + 1;
    }
    this.carry = text.slice(last + 1);
  }

  end(): NftListing {
    if (this.carry) this.line(this.carry);
    this.carry = '';
    this.closeChain();
    return { chains: this.chains, omitted: this.omitted };
  }

  private line(line: string): void {
    if (line.charCodeAt(0) !== 9) return; // "table ... {", "}", blank: nothing to read
    const open = CHAIN_OPEN.exec(line);
    if (open) {
      this.closeChain();
      this.chain = { name: unquote(open[1]!) };
      return;
    }
    const chain = this.chain;
    if (!chain) return;
    if (line === '\t}') {
      this.closeChain();
      return;
    }
    // Rules are one line each at depth two; a line nft wraps (long sets) goes deeper.
    if (line.charCodeAt(1) !== 9 || line.charCodeAt(2) === 9) return;
    if (chain.base) {
      chain.base.ruleCount++;
      return;
    }
    const base = BASE_CHAIN.exec(line);
    if (base) {
      chain.base = {
        name: clip(chain.name),
        type: base[1] as NftBaseChain['type'],
        hook: base[2] as NftBaseChain['hook'],
        priority: Number(base[3]),
        policy: (base[4] ?? 'accept') as NftBaseChain['policy'],
        ruleCount: 0,
      };
    } else if (OTHER_BASE_CHAIN.test(line)) this.omitted++;
    // else a chain's comment, or a rule of a regular chain: neither is counted
  }

  private closeChain(): void {
    const base = this.chain?.base;
    this.chain = undefined;
    if (!base) return;
    if (this.chains.length < LIMITS.nftBaseChainsPerTable) this.chains.push(base);
    else this.omitted++;
  }
}

export function parseNftTableListing(text: string): NftListing {
  const parser = new NftTableListingParser();
  parser.push(text);
  return parser.end();
}

/** A chain in words: `myinput (filter hook input priority 5, 1 rule)`. */
function describe(chain: NftBaseChain): string {
  return `${chain.name} (${chain.type} hook ${chain.hook} priority ${chain.priority}, ${chain.ruleCount} rule${chain.ruleCount === 1 ? '' : 's'})`;
}

/**
 * The table iptables-nft-save printed, corrected by what nft showed: nft's base chains attached,
 * the built-in chains iptables-nft-save declared but nft does not show taken out, and the problem
 * said with both. Never complete: what iptables cannot list, the agent cannot place in order.
 */
export function withNftBaseChains(table: IptablesTable, how: UnlistedTable, listing: NftListing | { error: string }): IptablesTable {
  const lead = how === 'tainted' ? 'iptables-nft-save leaves out base chains of this table' : (table.problem ?? unlistedProblem(how, ''));
  if ('error' in listing) return { ...table, complete: false, problem: clip(`${lead}; nft could not list them either: ${listing.error}`, LIMITS.message) };
  const shown = new Set(listing.chains.map((c) => c.name));
  const phantoms = table.builtinChains.filter((c) => !shown.has(c.name)).map((c) => c.name);
  const builtinChains = table.builtinChains.filter((c) => shown.has(c.name));
  // For a tainted table, the chains iptables did list need no words; for an unreadable one, all.
  const named = how === 'tainted' ? listing.chains.filter((c) => !builtinChains.some((b) => b.name === c.name)) : listing.chains;
  const tail = phantoms.length > 0 ? `; ${phantoms.join(', ')}, which iptables-nft-save printed, do not exist` : '';
  const head = `${lead}; nft shows `;
  const shows = wordsWithin(named.map(describe), listing.omitted, LIMITS.message - head.length - tail.length) || (how === 'tainted' ? 'none besides its own' : 'no base chain');
  return { ...table, complete: false, problem: clip(head + shows + tail, LIMITS.message), builtinChains, nftBaseChains: listing.chains };
}

/** As many of `items` as fit in `budget` characters, joined, then how many more there are. */
function wordsWithin(items: string[], omitted: number, budget: number): string {
  let out = '';
  for (const [i, item] of items.entries()) {
    const rest = items.length - i - 1 + omitted;
    const next = out ? `${out}, ${item}` : item;
    // Room for " and N more" unless this is the last one.
    if (next.length + (rest > 0 ? ` and ${rest} more`.length : 0) > budget) return out ? `${out} and ${items.length - i + omitted} more` : `${items.length + omitted} chains`;
    out = next;
  }
  return omitted > 0 ? `${out} and ${omitted} more` : out;
}

function unquote(name: string): string {
  return name.length >= 2 && name.startsWith('"') && name.endsWith('"') ? name.slice(1, -1) : name;
}

function clip(s: string, max: number = LIMITS.chainName): string {
  return printable(s.length > max ? s.slice(0, max) : s);
}
