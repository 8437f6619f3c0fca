// What both sides mean by "a Calico hook" and by "a chain", so that the agent's head watch and
// the aggregator's detection cannot drift apart (design.md section 6). No zod: the agent loads this.
import type { Backend, Family } from './report.js';

/**
 * Felix hooks a built-in chain with a rule that jumps to a `cali-` chain and whose first comment
 * is `cali:<hash>` (felix/rules/rule_defs.go). Exact hashes vary by version and chain.
 */
export function isCalicoHook(rule: { target: string; comment?: string }): boolean {
  return rule.target.startsWith('cali-') && (rule.comment?.startsWith('cali:') ?? false);
}

export interface ChainRef {
  family: Family;
  backend: Backend;
  table: string;
  chain: string;
}

/** One built-in chain of one ruleset: `ipv4/nft/filter/INPUT`. */
export function chainKey(c: ChainRef): string {
  return `${c.family}/${c.backend}/${c.table}/${c.chain}`;
}
