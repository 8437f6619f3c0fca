// Calico's position in the built-in chains (design.md section 6; projectcalico/calico
// felix/dataplane/linux/int_dataplane.go, felix/iptables/table.go, felix/rules/rule_defs.go).
import { chainKey, isCalicoHook } from '../../protocol/calico.js';
import { rulePositions, type BuiltinChain, type Family, type Backend, type HeadChange, type IptablesTable, type NodeReport, type Rule } from '../../protocol/report.js';
import { makeFinding, type FindingDraft, nodeKey } from './finding.js';
import { illumioUnnamed, type ChainMatcher, type IllumioPresence } from './illumio.js';

// Felix appends these whatever ChainInsertMode says: the accept and mark rules at the end of
// filter FORWARD (their hashes depend on the mark mask; these are the default mask's) and, since
// Calico 3.28.2, a nat POSTROUTING jump. They are never evidence of Append mode.
export const ALWAYS_APPENDED_HASHES: ReadonlySet<string> = new Set(['S93hcgKJrXEqnTfs', 'mp77cMpurHhyjLrM', '0i8pjzKKPyA34aQD']);

export type ChainMode =
  | 'insert' // Calico's rules are positions 1..k
  | 'append' // Calico's rules are the last ones (before the always-appended rules)
  | 'out-of-sync' // neither: another product moved them, or they are being moved
  | 'sole' // Calico's rules are the only ones: both modes look the same
  | 'unhooked'; // no Calico rule counts for the vote

export interface ChainPosition {
  family: Family;
  backend: Backend;
  table: string;
  chain: string;
  mode: ChainMode;
  hooked: boolean; // a `cali:`-commented rule jumps to a `cali-` chain
  calicoPositions: number[]; // 1-based, real positions (rulePositions), always-appended excluded
  ruleCount: number;
  head?: Rule; // the first rule that counts (not always-appended)
}

function calicoHash(rule: Rule): string | undefined {
  const comment = rule.comment;
  return comment !== undefined && comment.startsWith('cali:') ? comment.slice(5) : undefined;
}

/** Where Calico sits in one built-in chain. Pure; ignores the chain's table completeness. */
export function classifyCalicoChain(family: Family, backend: Backend, table: string, chain: BuiltinChain): ChainPosition {
  const rules = chain.rules;
  const count = rules.length;
  // Rules that count: all but the always-appended ones (one pass, no allocation per rule).
  let excludedFrom = count; // the trailing run of filter FORWARD's appended Calico rules
  if (table === 'filter' && chain.name === 'FORWARD') {
    // With a non-default mark mask the FORWARD accept/mark rules carry other hashes, so the
    // trailing run of Calico rules there that are not jumps to Calico chains is excluded too.
    while (excludedFrom > 0) {
      const rule = rules[excludedFrom - 1]!;
      const hash = calicoHash(rule);
      if (hash === undefined || (rule.target.startsWith('cali-') && !ALWAYS_APPENDED_HASHES.has(hash))) break;
      excludedFrom--;
    }
  }
  const positions = rulePositions(chain);
  const omitted = chain.ruleCount - count;
  const calicoPositions: number[] = [];
  let hooked = false;
  let head: Rule | undefined;
  let counted = 0; // rules that count, seen so far
  let firstCalico = -1; // index among counted rules
  let lastCalico = -1;
  let calicoCount = 0;
  for (let i = 0; i < count; i++) {
    const rule = rules[i]!;
    const hash = calicoHash(rule);
    if (isCalicoHook(rule)) hooked = true;
    if (i >= excludedFrom || (hash !== undefined && ALWAYS_APPENDED_HASHES.has(hash))) continue;
    if (head === undefined) head = rule;
    if (hash !== undefined) {
      if (firstCalico < 0) firstCalico = counted;
      lastCalico = counted;
      calicoCount++;
      calicoPositions.push(positions[i]!);
    }
    counted++;
  }
  const contiguous = calicoCount > 0 && lastCalico - firstCalico + 1 === calicoCount;
  let mode: ChainMode;
  if (calicoCount === 0) mode = 'unhooked';
  else if (calicoCount === counted && omitted === 0) mode = 'sole';
  else if (contiguous && firstCalico === 0) mode = 'insert';
  else if (contiguous && lastCalico === counted - 1) mode = 'append';
  else mode = 'out-of-sync';
  const position: ChainPosition = { family, backend, table, chain: chain.name, mode, hooked, calicoPositions, ruleCount: chain.ruleCount };
  if (head !== undefined) position.head = head;
  return position;
}

/** Every built-in chain of every complete table, with Calico's position in it. */
export function calicoPositions(report: NodeReport): ChainPosition[] {
  const result: ChainPosition[] = [];
  for (const set of report.iptables) {
    if (set.verdict === 'unsupported') continue;
    for (const table of set.tables) {
      // An incomplete table has no mode verdict: what is missing could change it.
      if (!table.complete) continue;
      for (const chain of table.builtinChains) result.push(classifyCalicoChain(set.family, set.backend, table.name, chain));
    }
  }
  return result;
}

/** The node's mode when its voting chains agree; undefined when none votes or they disagree. */
export function nodeCalicoMode(chains: readonly ChainPosition[]): 'insert' | 'append' | undefined {
  let insert = false;
  let append = false;
  for (const c of chains) {
    if (c.mode === 'insert') insert = true;
    else if (c.mode === 'append') append = true;
  }
  return insert === append ? undefined : insert ? 'insert' : 'append';
}

const where = (c: ChainPosition) => ({ family: c.family, backend: c.backend, table: c.table, chain: c.chain });
const label = (c: { family: string; backend: string; table: string; chain: string }) => `${c.family}/${c.backend} ${c.table} ${c.chain}`;

// The two places the mode is set, and the caveats an admin trips on (design.md section 6).
export const SET_APPEND_MODE =
  'Set Calico to Append mode. Operator-managed Calico (Tigera operator; namespace calico-system): ' +
  '`kubectl patch felixconfiguration default --type merge -p \'{"spec":{"chainInsertMode":"Append"}}\'`; ' +
  'the operator re-renders calico-node and reverts hand edits of the DaemonSet, so change FelixConfiguration, not the DaemonSet. ' +
  'Manifest-installed Calico: the same patch, and make sure calico-node does not set FELIX_CHAININSERTMODE ' +
  '(`kubectl -n kube-system get ds calico-node -o yaml | grep -A1 FELIX_CHAININSERTMODE`): the environment variable wins over FelixConfiguration. ' +
  'A per-node FelixConfiguration named node.<node-name> overrides `default` for that node (`kubectl get felixconfiguration`). ' +
  'Felix applies the change itself; the hooks move to the end of the chains, which the next report shows.';

const STANDARD_TARGETS = new Set([
  '', 'ACCEPT', 'DROP', 'RETURN', 'REJECT', 'LOG', 'NFLOG', 'MARK', 'CONNMARK', 'MASQUERADE', 'SNAT', 'DNAT', 'REDIRECT',
  'CT', 'NOTRACK', 'TCPMSS', 'TRACE', 'QUEUE', 'NFQUEUE', 'CHECKSUM', 'TPROXY', 'SET', 'AUDIT', 'CLASSIFY', 'DSCP', 'TOS', 'TTL', 'HL',
]);

/** Whether a target is a jump to a user chain (another product's), from the table's census. */
function isUserChainJump(table: IptablesTable, target: string): boolean {
  if (table.userChains.names.includes(target)) return true;
  for (const prefix of Object.keys(table.userChains.families)) if (target.startsWith(prefix)) return true;
  return (table.userChains.namesOmitted ?? 0) > 0 && !STANDARD_TARGETS.has(target);
}

// Who the first rule of a Calico-hooked chain belongs to. `illumio-presumed`: an unknown
// product's jump on a node where Illumio runs but no pattern names its chains (illumioUnnamed).
// `no-product`: a plain rule (ACCEPT, MARK, ...), not a jump to anyone's chain.
export type HeadOwner = 'calico' | 'kubernetes' | 'illumio' | 'illumio-presumed' | 'other' | 'no-product';

export interface ChainHead {
  family: Family;
  backend: Backend;
  table: string;
  chain: string;
  target: string;
  owner: HeadOwner;
}

export interface CalicoAnalysis {
  chains: ChainPosition[];
  mode: 'insert' | 'append' | undefined;
  findings: FindingDraft[];
  // The head of every chain Calico hooks, and whose it is taken to be. The desired layout
  // (Illumio first, Calico appended) raises no finding, so this is where it shows.
  heads: ChainHead[];
}

/**
 * Chains whose head went one way and back within the agent's window: a fight. A single change
 * is not one (switching Calico to Append moves every head once).
 */
export function fightingChains(changes: readonly HeadChange[]): Set<string> {
  const seen = new Set<string>();
  const fights = new Set<string>();
  for (const change of changes) {
    const key = chainKey(change);
    if (seen.has(`${key}\0${change.to}\0${change.from}`)) fights.add(key);
    seen.add(`${key}\0${change.from}\0${change.to}`);
  }
  return fights;
}

/**
 * One chain's fight in words: "iptables-nft-re (cali-INPUT) and illumio-ven (illumio-INPUT) took
 * the head of filter INPUT from each other 6 times in 5 minutes". Each side is named by the
 * processes the agent saw write its rule (HeadChange.by), and by the chain its rule jumps to;
 * by the chain alone where no writer is known (the legacy backend, an older agent).
 */
export function describeFight(changes: readonly HeadChange[]): string {
  const side = (taken: readonly HeadChange[]) => {
    const targets = [...new Set(taken.map((c) => c.to))].join(', ');
    const writers = [...new Set(taken.flatMap((c) => (c.by === undefined ? [] : [c.by])))].join('/');
    return writers ? `${writers} (${targets})` : targets;
  };
  const first = changes[0]!;
  const spanS = (Date.parse(changes.at(-1)!.at) - Date.parse(first.at)) / 1000;
  const span = spanS < 90 ? plural(Math.max(1, Math.round(spanS)), 'second') : plural(Math.round(spanS / 60), 'minute');
  const calico = changes.filter((c) => c.to.startsWith('cali-'));
  const other = changes.filter((c) => !c.to.startsWith('cali-'));
  return `${side(calico)} and ${side(other)} took the head of ${first.table} ${first.chain} from each other ${plural(changes.length, 'time')} in ${span}`;
}

const plural = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;

export function analyzeCalico(report: NodeReport, illumio: IllumioPresence, isIllumioChain: ChainMatcher): CalicoAnalysis {
  const node = nodeKey(report);
  const all = calicoPositions(report);
  const headChanges = report.headChanges ?? [];
  const fights = fightingChains(headChanges);
  // A chain in a fight has no position to judge, and its order at sampling time is chance.
  const chains = fights.size === 0 ? all : all.filter((c) => !fights.has(chainKey(c)));
  const mode = nodeCalicoMode(chains);
  const findings: FindingDraft[] = [];
  const insertChains = chains.filter((c) => c.mode === 'insert').map((c) => ({ ...where(c), positions: c.calicoPositions, ruleCount: c.ruleCount }));

  const tables = new Map<string, IptablesTable>();
  for (const set of report.iptables) for (const table of set.tables) tables.set(`${set.family}/${set.backend}/${table.name}`, table);
  const unnamed = illumioUnnamed(illumio);
  const ownerOf = (c: ChainPosition, target: string): HeadOwner => {
    if (target.startsWith('cali-')) return 'calico';
    if (target.startsWith('KUBE-')) return 'kubernetes';
    if (isIllumioChain(target)) return 'illumio';
    const table = tables.get(`${c.family}/${c.backend}/${c.table}`);
    if (!table || !isUserChainJump(table, target)) return 'no-product';
    return unnamed ? 'illumio-presumed' : 'other';
  };
  const heads: ChainHead[] = [];
  const headOwners = new Map<ChainPosition, HeadOwner>();
  for (const c of all) {
    if (!c.hooked || c.head === undefined) continue;
    const owner = ownerOf(c, c.head.target);
    headOwners.set(c, owner);
    heads.push({ ...where(c), target: c.head.target, owner });
  }
  const presumed = heads.filter((h) => h.owner === 'illumio-presumed');
  // Illumio's rule first and Calico's right after it, not last: Calico in Insert mode has been
  // pushed down by the VEN, and will take the top back at its next refresh.
  const displaced = chains.filter((c) => c.mode === 'out-of-sync' && (headOwners.get(c) === 'illumio' || headOwners.get(c) === 'illumio-presumed'));

  if ((insertChains.length > 0 && illumio.present) || displaced.length > 0 || fights.size > 0) {
    const fighting = headChanges.filter((h) => fights.has(chainKey(h)));
    const fightsByChain = [...fights].map((key) => fighting.filter((h) => chainKey(h) === key));
    const message =
      fights.size > 0
        ? `${fightsByChain.slice(0, 2).map(describeFight).join('; ')}${fights.size > 2 ? `; and ${fights.size - 2} more chain(s)` : ''}, on ${node}: two products are fighting for the top`
        : displaced.length > 0
          ? `Illumio's rule is above Calico's on ${node} (${displaced.map(label).slice(0, 3).join('; ')}) but Calico's is not last: Calico is in Insert mode and will take the top back` +
            (displaced.some((c) => headOwners.get(c) === 'illumio-presumed') ? ' (the rule above is taken to be Illumio\'s: Illumio runs on the node and ILLUMIO_CHAIN_PATTERNS names none of its chains)' : '')
          : `Calico is in Insert mode on ${node} (${insertChains.map(label).slice(0, 3).join('; ')}) and Illumio is present: both want the first position`;
    findings.push(
      makeFinding('CALICO_ILLUMIO_CONFLICT', [node], {
        nodes: [node],
        message,
        remediation:
          SET_APPEND_MODE +
          ' Until then Felix (every IptablesRefreshInterval, 180 s by default) and the VEN in coexistence mode keep moving each other\'s rule back to the top, ' +
          'and policy is enforced by whichever won last. If the other owner in evidence.headChanges is neither Calico nor Illumio, find the product that writes that chain.',
        evidence: {
          illumio: { hostDataDir: illumio.hostDataDir, fromElsewhere: illumio.fromElsewhere, chains: illumio.chains },
          insertChains,
          ...(displaced.length > 0 ? { displacedChains: displaced.map((c) => ({ ...where(c), calicoPositions: c.calicoPositions, head: c.head?.target, headOwner: headOwners.get(c) })) } : {}),
          ...(presumed.length > 0 ? { presumedIllumioHeads: presumed } : {}),
          ...(fights.size > 0 ? { fightingChains: [...fights], headChanges: fighting.slice(-8) } : {}),
        },
      }),
    );
  } else if (insertChains.length > 0) {
    findings.push(
      makeFinding('CALICO_INSERT_MODE', [node], {
        nodes: [node],
        message: `Calico is in Insert mode on ${node}: its rules come first in ${insertChains.length} built-in chain(s) (${insertChains.map(label).slice(0, 3).join('; ')}); not ready for Illumio's C-VEN`,
        remediation: SET_APPEND_MODE + ' Do this before installing the C-VEN.',
        evidence: { chains: insertChains },
      }),
    );
  }

  const byRuleset = new Map<string, { table: IptablesTable; hasIncomplete: boolean; family: Family; backend: Backend }[]>();
  for (const set of report.iptables) {
    for (const table of set.tables) {
      const key = `${set.family}/${set.backend}`;
      const list = byRuleset.get(key) ?? [];
      list.push({ table, hasIncomplete: !table.complete || set.verdict !== 'ok', family: set.family, backend: set.backend });
      byRuleset.set(key, list);
    }
  }

  for (const c of chains) {
    if (c.mode === 'out-of-sync' && !displaced.includes(c)) {
      const firstCalico = c.calicoPositions[0]!;
      findings.push(
        makeFinding('CALICO_OUT_OF_SYNC', [node, c.family, c.backend, c.table, c.chain], {
          nodes: [node],
          message: `Calico's rules in ${label(c)} on ${node} are neither first nor last (positions ${c.calicoPositions.join(', ')} of ${c.ruleCount})`,
          remediation:
            'Another product inserted rules above Calico\'s, or they were edited by hand. Felix puts its rules back every IptablesRefreshInterval (180 s by default); ' +
            'if this finding stays across reports, something keeps moving them: find the owner of the rules above Calico\'s ' +
            `(\`iptables${c.family === 'ipv6' ? '6' : ''}-save -t ${c.table} | grep -n -- '-A ${c.chain} '\` on the node). Do not reorder the rules by hand; ` +
            'settle which product must be first (with Illumio: Calico in Append mode, see CALICO_INSERT_MODE).',
          evidence: { ...where(c), calicoPositions: c.calicoPositions, ruleCount: c.ruleCount, firstCalicoPosition: firstCalico, head: c.head?.target },
        }),
      );
    }
    // A jump at the head of a chain Calico hooks, owned by neither Calico, Kubernetes nor Illumio:
    // the VEN in coexistence mode takes the top back from it, so the two will contend. Where
    // Illumio runs and no pattern names its chains, such a jump is presumed to be the VEN's, and
    // with Calico appended that is the layout the guide asks for (illumioUnnamed).
    const head = c.head;
    if (head && headOwners.get(c) === 'other') {
      findings.push(
        makeFinding('FOREIGN_HEAD_RULE', [node, c.family, c.backend, c.table, c.chain], {
          nodes: [node],
          message: `the first rule of ${label(c)} on ${node}, a chain Calico hooks, jumps to ${head.target}, which is neither Calico's, Kubernetes' nor Illumio's`,
          remediation:
            `Find the product that owns ${head.target} (\`iptables${c.family === 'ipv6' ? '6' : ''}-save -t ${c.table}\` on the node). ` +
            'Illumio\'s VEN in coexistence mode keeps its rule at the top of the main tables and moves it back when something else takes the spot, so this product and the VEN will contend. ' +
            `If ${head.target} is Illumio's, add its prefix to the aggregator's ILLUMIO_CHAIN_PATTERNS.`,
          evidence: { ...where(c), position: 1, target: head.target, illumio: { present: illumio.present, chains: illumio.chains } },
        }),
      );
    }
  }

  // Leftover cali- chains: only a ruleset read whole can show that nothing jumps to them.
  for (const [key, tables] of byRuleset) {
    if (tables.some((t) => t.hasIncomplete)) continue;
    const hooked = all.some((c) => `${c.family}/${c.backend}` === key && c.hooked);
    if (hooked) continue;
    const counts: Record<string, number> = {};
    let total = 0;
    for (const { table } of tables) {
      let n = table.userChains.names.filter((name) => name.startsWith('cali-')).length;
      for (const [prefix, count] of Object.entries(table.userChains.families)) if (prefix.startsWith('cali-')) n += count;
      if (n > 0) counts[table.name] = n;
      total += n;
    }
    if (total === 0) continue;
    const { family, backend } = tables[0]!;
    findings.push(
      makeFinding('CALICO_STALE_CHAINS', [node, family, backend], {
        nodes: [node],
        message: `${total} cali- chain(s) exist in ${family}/${backend} on ${node} but no built-in chain jumps to them: leftovers, not an active Calico`,
        remediation:
          'They do nothing while unhooked. They are usually left by a removed Calico, a switch of iptables backend, or Calico\'s nftables dataplane. ' +
          'After checking that calico-node does not use this backend, remove them by rebooting the node or by flushing and deleting the cali- chains ' +
          `with the matching binary (iptables${family === 'ipv6' ? '6' : ''}-${backend === 'unknown' ? '<backend>' : backend}). They can mislead tools that look for Calico by chain name.`,
        evidence: { family, backend, chainsPerTable: counts },
      }),
    );
  }

  if (report.nftTables.some((t) => t.name === 'calico')) {
    findings.push(
      makeFinding('CALICO_NFT_DATAPLANE', [node], {
        nodes: [node],
        message: `Calico runs its nftables dataplane on ${node} (nft table calico): iptables ordering and chainInsertMode do not apply`,
        remediation:
          'Nothing to change in Calico for the insert mode. Install the C-VEN with the nft firewall backend in Illumio\'s Helm chart so it matches, ' +
          'and confirm with Illumio that your VEN version supports coexistence with Calico\'s nftables dataplane (FelixConfiguration nftablesMode).',
        evidence: { nftTables: report.nftTables.filter((t) => t.name === 'calico' || t.name === 'kube-proxy') },
      }),
    );
  }

  return { chains: all, mode, findings, heads };
}
