// NodeReport v2: what an agent sends about its node (design.md section 4). Version 2 carries the
// application-specific machine ID (protocol/machine-id.ts) in place of the raw one, and checks
// node and cluster names (protocol/names.ts).
//
// Every string and array is bounded, and the few totals that multiply (rules across all chains,
// user-chain names across all tables) are bounded as totals, so that no report that passes this
// schema can exceed MAX_REPORT_BYTES once serialised. Lengths count UTF-16 code units; strings
// admit no control characters and no lone surrogates (text.ts), so a unit is at most 3 bytes of
// JSON. test/agent/protocol.test.ts builds the largest report the schema admits and checks it.
import { z } from 'zod';
import { LIMITS, SCHEMA_VERSION } from './limits.js';
import { CLUSTER_NAME_RULE, DNS1123_LABEL, DNS1123_SUBDOMAIN, MAX_CLUSTER_NAME, MAX_NODE_NAME, NODE_NAME_RULE } from './names.js';
import { BUILTIN_WORD, PRINTABLE, PRINTABLE_RULE } from './text.js';

/**
 * A string of at most `max` code units, none of them a control character or a lone surrogate.
 * Not zod's .max(), which counts code points (4 bytes of JSON each, at worst, against 3 for a
 * unit): the length goes into the JSON Schema as maxLength, which the aggregator's ajv counts in
 * code units too (aggregator/report-validation.ts).
 */
const text = (max: number) =>
  z
    .string()
    .refine((s) => s.length <= max, { error: `must be at most ${max} characters (UTF-16 code units)` })
    .meta({ maxLength: max })
    .regex(PRINTABLE, { error: PRINTABLE_RULE });
// ISO-8601 in UTC, as toISOString() writes it; zod's regex admits any number of fraction digits.
const timestamp = () => z.iso.datetime().max(LIMITS.timestamp);
// Chain family prefixes are the agent's own constants, not text read from the host.
const FAMILY_PREFIX = /^[!-~]+$/;
const builtinWord = () => z.string().regex(BUILTIN_WORD, { error: 'must be 1 to 16 uppercase letters' });

export { LIMITS, MAX_REPORT_BYTES, SCHEMA_VERSION } from './limits.js';

export const MachineIdStatus = z.enum(['ok', 'missing', 'empty', 'uninitialized', 'invalid']);
export type MachineIdStatus = z.infer<typeof MachineIdStatus>;

export const MachineIdFile = z.strictObject({
  status: MachineIdStatus,
  // With status ok: the application-specific ID derived from the file (protocol/machine-id.ts).
  // The raw ID never leaves the node.
  appId: z.string().regex(/^[0-9a-f]{32}$/).optional(),
  // With status invalid: what is wrong with the content, said without the content (which may be
  // a real ID written in the wrong form), e.g. "uppercase hex digits".
  detail: text(LIMITS.message).optional(),
  // Set when the file is a symbolic link (the D-Bus copy usually links to /etc/machine-id).
  linkTarget: text(LIMITS.linkTarget).optional(),
});
export type MachineIdFile = z.infer<typeof MachineIdFile>;

export const Family = z.enum(['ipv4', 'ipv6']);
export type Family = z.infer<typeof Family>;
export const Backend = z.enum(['legacy', 'nft', 'unknown']);
export type Backend = z.infer<typeof Backend>;

export const Rule = z.strictObject({
  // The `-j`/`-g` target; empty for a rule without one (a counter or a match-only rule).
  target: text(LIMITS.chainName),
  comment: text(LIMITS.comment).optional(),
});
export type Rule = z.infer<typeof Rule>;

export const BuiltinChain = z.strictObject({
  name: builtinWord(),
  policy: builtinWord(),
  // Rules in the chain, which may be more than `rules` holds: when a chain is longer than
  // LIMITS.rulesPerChain, `rules` keeps the first `omittedAfter` rules and the last ones, since
  // Calico's mode shows at the head (Insert) or at the tail (Append).
  ruleCount: z.number().int().nonnegative(),
  rules: z.array(Rule).max(LIMITS.rulesPerChain),
  omittedAfter: z.number().int().nonnegative().optional(),
});
export type BuiltinChain = z.infer<typeof BuiltinChain>;

export const UserChains = z.strictObject({
  // Chains of the high-cardinality families (KUBE-SVC-, cali-fw-, ...), counted per prefix.
  families: z.record(z.string().max(LIMITS.familyPrefix).regex(FAMILY_PREFIX, { error: 'must be printable ASCII' }), z.number().int().nonnegative()),
  // Every other user chain by name, up to the limit; the rest are counted in namesOmitted.
  names: z.array(text(LIMITS.chainName)),
  namesOmitted: z.number().int().nonnegative().optional(),
});
export type UserChains = z.infer<typeof UserChains>;

// A base chain as nft shows it (`nft list table`), for a table iptables-nft-save could not list
// whole: a chain hooked with a name, type or priority iptables does not know is left out of its
// listing (iptables nft-cache.c, nft_cache_add_base_chain), yet the kernel runs it. The values
// are what the kernel allows for the ip and ip6 families (nft(8), CHAINS).
export const NftBaseChain = z.strictObject({
  name: text(LIMITS.chainName),
  type: z.enum(['filter', 'nat', 'route']),
  hook: z.enum(['prerouting', 'input', 'forward', 'output', 'postrouting']),
  // Lower runs first; iptables' own filter chains are at 0, nat's DNAT at -100 and SNAT at 100.
  priority: z.number().int().min(-2147483648).max(2147483647),
  policy: z.enum(['accept', 'drop']),
  ruleCount: z.number().int().nonnegative(),
});
export type NftBaseChain = z.infer<typeof NftBaseChain>;

export const IptablesTable = z.strictObject({
  name: text(32),
  complete: z.boolean(),
  // Why the table is not complete, for the admin.
  problem: text(LIMITS.message).optional(),
  builtinChains: z.array(BuiltinChain).max(5),
  userChains: UserChains,
  // Only for a table iptables-nft-save could not list whole, as nft showed it on the node. Optional
  // so that reports of agents without it stay valid; an aggregator without it refuses a report
  // that carries it, so aggregators are upgraded first (as for every schema change).
  nftBaseChains: z.array(NftBaseChain).max(LIMITS.nftBaseChainsPerTable).optional(),
});
export type IptablesTable = z.infer<typeof IptablesTable>;

// ok: every table framed and whole. incomplete: at least one table cut or unframed.
// unsupported: not iptables-save text at all (for example `iptables -S`). empty: no tables.
export const DumpVerdict = z.enum(['ok', 'incomplete', 'unsupported', 'empty']);
export type DumpVerdict = z.infer<typeof DumpVerdict>;

export const IptablesRuleset = z.strictObject({
  family: Family,
  backend: Backend,
  source: z.enum(['host', 'dump']),
  verdict: DumpVerdict,
  message: text(LIMITS.message).optional(),
  ruleCount: z.number().int().nonnegative(),
  tables: z.array(IptablesTable).max(LIMITS.tablesPerEntry),
});
export type IptablesRuleset = z.infer<typeof IptablesRuleset>;

export const NftTable = z.strictObject({
  family: text(16),
  name: text(64),
});
export type NftTable = z.infer<typeof NftTable>;

export const CollectionError = z.strictObject({
  source: text(64),
  message: text(LIMITS.message),
});
export type CollectionError = z.infer<typeof CollectionError>;

// The first rule of a hooked built-in chain changed owner between two samples: Calico and
// another product both want the top, and each moves the other (design.md section 6, "a fight").
export const HeadChange = z.strictObject({
  family: Family,
  backend: Backend,
  table: text(32),
  chain: builtinWord(),
  from: text(LIMITS.chainName),
  to: text(LIMITS.chainName),
  at: timestamp(),
  // The process whose nftables commit added the rule now at the head, as the kernel names it
  // (at most 15 characters: iptables-nft-restore is "iptables-nft-re"). Absent where nobody told
  // the agent: the legacy backend, a commit the listener missed, an agent before this field.
  // An aggregator that predates the field refuses it as an unknown field; the agent then sends
  // its reports without it for a while (agent/run.ts), so either side may be upgraded first.
  by: text(LIMITS.processName).optional(),
});
export type HeadChange = z.infer<typeof HeadChange>;

// When the agent collected the report; the aggregator checks it alone on a report it recognises
// by its bytes as a repeat (aggregator/reports/fingerprint.ts).
export const CollectedAt = timestamp();

const NodeReportShape = z.strictObject({
  schemaVersion: z.literal(SCHEMA_VERSION),
  agent: z.strictObject({ version: text(64) }),
  node: z.strictObject({
    name: z.string().max(MAX_NODE_NAME).regex(DNS1123_SUBDOMAIN, { error: `must be ${NODE_NAME_RULE}` }),
    cluster: z.string().max(MAX_CLUSTER_NAME).regex(DNS1123_LABEL, { error: `must be ${CLUSTER_NAME_RULE}` }).optional(),
  }),
  collectedAt: CollectedAt,
  machineId: z.strictObject({ etc: MachineIdFile, dbus: MachineIdFile }),
  iptables: z.array(IptablesRuleset).max(LIMITS.iptablesEntries),
  nftTables: z.array(NftTable).max(LIMITS.nftTables),
  illumio: z.strictObject({ hostDataDir: z.boolean(), serverVen: z.boolean() }),
  errors: z.array(CollectionError).max(LIMITS.errors),
  // Optional so that v1 reports from agents without fight detection stay valid.
  headChanges: z.array(HeadChange).max(LIMITS.headChanges).optional(),
});
type NodeReportShape = z.infer<typeof NodeReportShape>;

export const NodeReport = NodeReportShape.superRefine((report, ctx) => {
  for (const issue of reportTotalsIssues(report)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
});
export type NodeReport = z.infer<typeof NodeReport>;

export interface ReportTotalsIssue {
  path: (string | number)[];
  message: string;
}

/**
 * The limits that span the whole report (rules and user-chain names across all tables, chain
 * families per table), which no per-field bound can say. NodeReport's superRefine uses it, and
 * so does the aggregator, which validates with JSON Schema for speed.
 */
export function reportTotalsIssues(report: Pick<NodeReportShape, 'iptables'>): ReportTotalsIssue[] {
  const issues: ReportTotalsIssue[] = [];
  let rules = 0;
  let names = 0;
  let baseChains = 0;
  for (const [i, set] of report.iptables.entries()) {
    for (const [j, table] of set.tables.entries()) {
      names += table.userChains.names.length;
      baseChains += table.nftBaseChains?.length ?? 0;
      if (Object.keys(table.userChains.families).length > LIMITS.userChainFamilies) {
        issues.push({ path: ['iptables', i, 'tables', j, 'userChains', 'families'], message: `at most ${LIMITS.userChainFamilies} chain families per table` });
      }
      for (const chain of table.builtinChains) rules += chain.rules.length;
    }
  }
  if (rules > LIMITS.rulesPerReport) issues.push({ path: ['iptables'], message: `at most ${LIMITS.rulesPerReport} built-in chain rules per report, got ${rules}` });
  if (names > LIMITS.userChainNamesPerReport) issues.push({ path: ['iptables'], message: `at most ${LIMITS.userChainNamesPerReport} user chain names per report, got ${names}` });
  if (baseChains > LIMITS.nftBaseChainsPerReport) issues.push({ path: ['iptables'], message: `at most ${LIMITS.nftBaseChainsPerReport} nft base chains per report, got ${baseChains}` });
  return issues;
}

/** 1-based positions of the rules a chain holds, accounting for rules omitted in the middle. */
export function rulePositions(chain: BuiltinChain): number[] {
  const omitted = chain.ruleCount - chain.rules.length;
  const cut = chain.omittedAfter ?? chain.rules.length;
  return chain.rules.map((_, i) => (i < cut ? i + 1 : i + 1 + omitted));
}
