// Watches the head of every chain Calico hooks, between samples. When the first rule changes
// owner and Calico is one of the two owners, two products both want the top and keep moving each
// other: Felix re-asserts its position on every refresh (design.md section 6, "a fight"), and so
// does Illumio in coexistence mode. One sample cannot show that; a sequence can.
//
// Where the listener saw the commit that added the new head (HeadWriters), the change names the
// process that made it: the writers' names are what tells an admin which two products fight.
import { chainKey, isCalicoHook, type ChainRef } from '../protocol/calico.js';
import type { HeadChange, IptablesRuleset, NodeReport } from '../protocol/report.js';
import { LIMITS } from '../protocol/limits.js';
import { printable } from '../protocol/text.js';
import type { Commit } from './monitor-commits.js';

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

/** Who put a rule jumping to `target` into a built-in chain, when the listener saw it. */
export type WriterOf = (chain: ChainRef, target: string) => string | undefined;

export class HeadWatch {
  private previous = new Map<string, Head>();
  private changes: HeadChange[] = [];

  /** `windowMs`: how long a head change stays in the reports after it was seen. */
  constructor(private readonly windowMs: number) {}

  /** The head changes since the previous rulesets, and those before it within the window. */
  observe(report: NodeReport, now = Date.now(), writerOf?: WriterOf): HeadChange[] {
    const owners = heads(report.iptables);
    const at = new Date(now).toISOString();
    for (const [key, { chain, owner }] of owners) {
      const before = this.previous.get(key)?.owner;
      if (before === undefined || before === owner) continue;
      if (!before.startsWith('cali-') && !owner.startsWith('cali-')) continue; // not Calico's fight
      const by = writerOf?.(chain, owner);
      this.changes.push({ ...chain, from: before, to: owner, at, ...(by !== undefined ? { by } : {}) });
    }
    this.previous = owners;
    return this.recent(now);
  }

  /** The head changes within the window, without new rulesets to compare. */
  recent(now = Date.now()): HeadChange[] {
    this.changes = this.changes.filter((c) => now - Date.parse(c.at) < this.windowMs).slice(-LIMITS.headChanges);
    return [...this.changes];
  }
}

// Per built-in chain, the targets whose writer is remembered: the heads that fight are two or
// three; a chain rewritten whole (kube-proxy's) adds more, and the oldest are forgotten.
const TARGETS_PER_CHAIN = 16;

/**
 * The process that last added a rule jumping to each target in each built-in chain of the nft
 * backend, from the commits the listener saw (the legacy backend tells nobody).
 */
export class HeadWriters {
  private readonly byChain = new Map<string, Map<string, string>>();

  record(commit: Commit): void {
    const writer = printable(commit.writer.slice(0, LIMITS.processName));
    for (const rule of commit.added) {
      const key = chainKey({ family: rule.family, backend: 'nft', table: rule.table, chain: rule.chain });
      let targets = this.byChain.get(key);
      if (!targets) this.byChain.set(key, (targets = new Map()));
      targets.delete(rule.target); // re-inserted: now the newest
      targets.set(rule.target, writer);
      if (targets.size > TARGETS_PER_CHAIN) targets.delete(targets.keys().next().value!);
    }
  }

  readonly writerOf: WriterOf = (chain, target) => (chain.backend === 'nft' ? this.byChain.get(chainKey(chain))?.get(target) : undefined);
}
