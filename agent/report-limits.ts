// Fits a report into the protocol's totals (protocol/report.ts LIMITS) without losing what
// detection needs: chains keep their head and tail, user-chain names beyond the budget become a
// count. A node only exceeds these with hundreds of rules in built-in chains, which is rare.
// And makes every string printable, as the protocol requires (protocol/text.ts).
import { LIMITS } from '../protocol/limits.js';
import type { IptablesRuleset } from '../protocol/report.js';
import { printable } from '../protocol/text.js';
import { keepHeadAndTail } from './iptables-save.js';

/** `value` with every string in it, object keys included, passed through printable(). */
export function printableReport<T>(value: T): T {
  return printableValue(value) as T;
}

function printableValue(value: unknown): unknown {
  if (typeof value === 'string') return printable(value);
  if (Array.isArray(value)) return value.map(printableValue);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[printable(key)] = printableValue(item);
  return out;
}

export function fitRulesets(rulesets: IptablesRuleset[]): IptablesRuleset[] {
  let out = rulesets.slice(0, LIMITS.iptablesEntries);
  for (let perChain: number = LIMITS.rulesPerChain; countRules(out) > LIMITS.rulesPerReport && perChain > 2; perChain = Math.floor(perChain / 2)) {
    out = out.map((set) => ({
      ...set,
      tables: set.tables.map((table) => ({
        ...table,
        // An already cut chain is cut again from the rules it kept: its head and tail are still
        // the chain's head and tail, and ruleCount still holds the true length.
        builtinChains: table.builtinChains.map((chain) => keepHeadAndTail(chain, perChain)),
      })),
    }));
  }
  let namesLeft: number = LIMITS.userChainNamesPerReport;
  let baseChainsLeft: number = LIMITS.nftBaseChainsPerReport;
  return out.map((set) => ({
    ...set,
    tables: set.tables.map((fitted) => {
      // nft base chains come only with a table iptables-nft-save could not list, which is rare;
      // past the total, the table's problem still names them.
      let table = fitted;
      if (table.nftBaseChains) {
        const kept = table.nftBaseChains.slice(0, baseChainsLeft);
        baseChainsLeft -= kept.length;
        table = { ...table, nftBaseChains: kept };
      }
      const { names, namesOmitted = 0 } = table.userChains;
      if (names.length <= namesLeft) {
        namesLeft -= names.length;
        return table;
      }
      const kept = names.slice(0, namesLeft);
      namesLeft = 0;
      return { ...table, userChains: { ...table.userChains, names: kept, namesOmitted: namesOmitted + names.length - kept.length } };
    }),
  }));
}

function countRules(rulesets: IptablesRuleset[]): number {
  let n = 0;
  for (const set of rulesets) for (const t of set.tables) for (const c of t.builtinChains) n += c.rules.length;
  return n;
}
