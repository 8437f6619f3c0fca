// Watches the head of every chain Calico hooks, between samples. When the first rule changes
// owner and Calico is one of the two owners, two products both want the top and keep moving each
// other: Felix re-asserts its position on every refresh (design.md section 6, "a fight"), and so
// does Illumio in coexistence mode. One sample cannot show that; a sequence can.
import { chainKey, isCalicoHook, type ChainRef } from '../protocol/calico.js';
import type { HeadChange, IptablesRuleset, NodeReport } from '../protocol/report.js';
import { LIMITS } from '../protocol/limits.js';

type Head = { chain: ChainRef; owner: string };

/** chainKey → owner of the first rule (its target), for every built-in chain Calico hooks. */
export function headOwners(rulesets: IptablesRuleset[]): Map<string, string> {
  return new Map([...heads(rulesets)].map(([key, head]) => [key, head.owner]));
}

function heads(rulesets: IptablesRuleset[]): Map<string, Head> {
  const owners = new Map<string, Head>();
  for (const set of rulesets) {
    for (const table of set.tables) {
      if (!table.complete) continue; // an incomplete table proves nothing about its head
      for (const chain of table.builtinChains) {
        const first = chain.rules[0];
        if (!first || !chain.rules.some(isCalicoHook)) continue;
        const ref = { family: set.family, backend: set.backend, table: table.name, chain: chain.name };
        owners.set(chainKey(ref), { chain: ref, owner: first.target });
      }
    }
  }
  return owners;
}

export class HeadWatch {
  private previous = new Map<string, Head>();
  private changes: HeadChange[] = [];

  /** `windowMs`: how long a head change stays in the reports after it was seen. */
  constructor(private readonly windowMs: number) {}

  observe(report: NodeReport, now = Date.now()): HeadChange[] {
    const owners = heads(report.iptables);
    const at = new Date(now).toISOString();
    for (const [key, { chain, owner }] of owners) {
      const before = this.previous.get(key)?.owner;
      if (before === undefined || before === owner) continue;
      if (!before.startsWith('cali-') && !owner.startsWith('cali-')) continue; // not Calico's fight
      this.changes.push({ ...chain, from: before, to: owner, at });
    }
    this.previous = owners;
    this.changes = this.changes.filter((c) => now - Date.parse(c.at) < this.windowMs).slice(-LIMITS.headChanges);
    return [...this.changes];
  }
}
