// Watches the head of every chain Calico hooks, between samples. When the first rule changes
// owner and Calico is one of the two owners, two products both want the top and keep moving each
// other: Felix re-asserts its position on every refresh (design.md section 6, "a fight"), and so
// does Illumio in coexistence mode. One sample cannot show that; a sequence can.
import type { HeadChange, IptablesRuleset, NodeReport } from '../protocol/report.js';
import { LIMITS } from '../protocol/limits.js';

const isCalicoHook = (r: { target: string; comment?: string }) => r.target.startsWith('cali-') && (r.comment?.startsWith('cali:') ?? false);

/** key → owner of the first rule (its target), for every built-in chain Calico hooks. */
export function headOwners(rulesets: IptablesRuleset[]): Map<string, string> {
  const owners = new Map<string, string>();
  for (const set of rulesets) {
    for (const table of set.tables) {
      if (!table.complete) continue; // an incomplete table proves nothing about its head
      for (const chain of table.builtinChains) {
        const first = chain.rules[0];
        if (!first || !chain.rules.some(isCalicoHook)) continue;
        owners.set(`${set.family}/${set.backend}/${table.name}/${chain.name}`, first.target);
      }
    }
  }
  return owners;
}

export class HeadWatch {
  private previous = new Map<string, string>();
  private changes: HeadChange[] = [];

  /** `windowMs`: how long a head change stays in the reports after it was seen. */
  constructor(private readonly windowMs: number) {}

  observe(report: NodeReport, now = Date.now()): HeadChange[] {
    const owners = headOwners(report.iptables);
    const at = new Date(now).toISOString();
    for (const [key, owner] of owners) {
      const before = this.previous.get(key);
      if (before === undefined || before === owner) continue;
      if (!before.startsWith('cali-') && !owner.startsWith('cali-')) continue; // not Calico's fight
      const [family, backend, table, chain] = key.split('/') as [HeadChange['family'], HeadChange['backend'], string, string];
      this.changes.push({ family, backend, table, chain, from: before, to: owner, at });
    }
    this.previous = owners;
    this.changes = this.changes.filter((c) => now - Date.parse(c.at) < this.windowMs).slice(-LIMITS.headChanges);
    return [...this.changes];
  }
}
