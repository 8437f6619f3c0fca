// parseIptablesSave: `iptables-save` text in, the ordering of the built-in chains and a census of
// the user chains out, in one pass (design.md section 3).
//
// A kube-proxy node with 5,000 services prints ~75,000 lines, almost all of them rules in
// KUBE-SVC-/KUBE-SEP- chains. Those are only counted (one Map lookup per line); only the rules of
// built-in chains, a few dozen, are tokenised. That keeps the parser within a small factor of
// merely splitting the text into lines (npm run bench).
//
// Anything the parser cannot vouch for is said, never guessed: a table without COMMIT, a line cut
// short or a line that is not iptables-save syntax makes that table `complete: false` with a
// `problem`; text that is not iptables-save output at all (for example `iptables -S`) is
// `unsupported`.
import { LIMITS } from '../protocol/limits.js';
import type { BuiltinChain, DumpVerdict, IptablesTable, Rule } from '../protocol/report.js';

export interface ParsedRuleset {
  verdict: DumpVerdict;
  message?: string;
  ruleCount: number;
  tables: IptablesTable[];
}

// User chains that come by the hundred or thousand, one per service, endpoint, pod interface or
// policy: counted per prefix instead of listed.
export const CHAIN_FAMILIES = [
  'KUBE-SVC-', 'KUBE-SVL-', 'KUBE-SEP-', 'KUBE-FW-', 'KUBE-XLB-', 'KUBE-EXT-',
  'cali-fw-', 'cali-tw-', 'cali-fh-', 'cali-th-', 'cali-pri-', 'cali-pro-', 'cali-pi-', 'cali-po-', 'cali-sm-',
  'CNI-DN-', 'CNI-HOSTPORT-', 'CNI-',
] as const;

export const NAMES_PER_TABLE = 32;
const MAX_TABLES = LIMITS.tablesPerEntry;

// Families by first character, longest prefix first, so a name is tried against a few prefixes.
const FAMILIES_BY_INITIAL = new Map<number, string[]>();
for (const prefix of [...CHAIN_FAMILIES].sort((a, b) => b.length - a.length)) {
  const list = FAMILIES_BY_INITIAL.get(prefix.charCodeAt(0)) ?? [];
  list.push(prefix);
  FAMILIES_BY_INITIAL.set(prefix.charCodeAt(0), list);
}

export function chainFamily(name: string): string | undefined {
  const candidates = FAMILIES_BY_INITIAL.get(name.charCodeAt(0));
  if (candidates) for (const prefix of candidates) if (name.startsWith(prefix)) return prefix;
  return undefined;
}

interface ChainState {
  name: string;
  builtin: boolean;
  policy: string;
  rules: Rule[]; // filled for built-in chains only
}

interface TableState {
  name: string;
  chains: ChainState[]; // in declaration order
  cursor: number; // the chain whose rules came last
  byName?: Map<string, ChainState>; // built only for input that is not in iptables-save order
  problem?: string;
}

// iptables-save declares the chains of a table, then prints their rules chain by chain in the
// order it declared them. Following that order with a cursor finds each rule's chain by comparing
// names in place, with no string slicing or hashing on the 75,000 lines of a busy node; a file
// written in another order (by hand, say) falls back to a Map.
function findChain(table: TableState, text: string, at: number, lineEnd: number): ChainState | undefined {
  const { chains } = table;
  for (let i = table.cursor; i < chains.length; i++) {
    const name = chains[i]!.name;
    if (nameAt(text, at, name, lineEnd)) {
      table.cursor = i;
      return chains[i];
    }
  }
  let nameEnd = text.indexOf(' ', at);
  if (nameEnd === -1 || nameEnd > lineEnd) nameEnd = lineEnd;
  table.byName ??= new Map(chains.map((c) => [c.name, c]));
  return table.byName.get(text.slice(at, nameEnd));
}

function sameUserChain(text: string, at: number, name: string, lineEnd: number): boolean {
  const n = name.length;
  const after = at + n;
  return (
    (after === lineEnd || text.charCodeAt(after) === 32) &&
    text.charCodeAt(after - 1) === name.charCodeAt(n - 1) &&
    text.charCodeAt(after - 2) === name.charCodeAt(n - 2) &&
    text.charCodeAt(after - 3) === name.charCodeAt(n - 3) &&
    text.charCodeAt(at) === name.charCodeAt(0)
  );
}

/** Whether the chain name at text[at] is `name`. Compared from the end: hashed names differ there. */
function nameAt(text: string, at: number, name: string, lineEnd: number): boolean {
  const n = name.length;
  const after = at + n;
  if (after > lineEnd || (after !== lineEnd && text.charCodeAt(after) !== 32)) return false;
  for (let k = n - 1; k >= 0; k--) if (text.charCodeAt(at + k) !== name.charCodeAt(k)) return false;
  return true;
}

const IPTABLES_S_LINE = /^-(P|N) \S+/;

/** Parses a whole text at once. */
export function parseIptablesSave(text: string): ParsedRuleset {
  const parser = new IptablesSaveParser();
  parser.push(text);
  return parser.end();
}

/**
 * The same parser, fed in chunks as they come from a pipe or a file, so that a 7.5 MB ruleset
 * never has to sit in memory whole (the agent's memory target is 64 MiB, and Node.js alone
 * takes 40 of it).
 */
export class IptablesSaveParser {
  private tables: IptablesTable[] = [];
  private ruleCount = 0;
  private current: TableState | undefined;
  private sawTable = false;
  private sawSaveHeader = false;
  private strayLines = 0;
  private firstStray = 0;
  private sSyntaxLines = 0;
  private generatedOpen = false; // saw "# Generated by" without its "# Completed on"
  private extraTables = 0;
  private lastLineCut = false;
  private lineNo = 0;
  private carry = ''; // the start of a line whose end is in the next chunk

  push(chunk: string): void {
    const lastNewline = chunk.lastIndexOf('\n');
    if (lastNewline === -1) {
      this.carry += chunk;
      return;
    }
    let from = 0;
    if (this.carry) {
      // Finish the line the previous chunk began, without copying this whole chunk onto it.
      const firstNewline = chunk.indexOf('\n');
      const line = this.carry + chunk.slice(0, firstNewline + 1);
      this.carry = '';
      this.lines(line, 0, line.length, true);
      from = firstNewline + 1;
    }
    this.lines(chunk, from, lastNewline + 1, true);
    this.carry = chunk.slice(lastNewline + 1);
  }

  end(): ParsedRuleset {
    if (this.carry) {
      // iptables-save ends every line, the last one too, with a newline.
      this.lastLineCut = true;
      const rest = this.carry;
      this.carry = '';
      this.lines(rest, 0, rest.length, false);
    }
    this.close('the text ends inside the table, before its COMMIT');
    return this.verdict();
  }

  private close(problem?: string): void {
    const current = this.current;
    if (!current) return;
    if (problem && !current.problem) current.problem = problem;
    if (this.tables.length < MAX_TABLES) this.tables.push(finishTable(current));
    else this.extraTables++;
    this.current = undefined;
  }

  private stray(lineNo: number): void {
    this.strayLines++;
    if (!this.firstStray) this.firstStray = lineNo;
  }

  /** Parses text[from, length), which ends at a line boundary unless `terminated` is false. */
  private lines(text: string, from: number, length: number, terminated: boolean): void {
    let current = this.current;
    let lineNo = this.lineNo;
    let start = from;
    while (start < length) {
      let end = text.indexOf('\n', start);
      if (end === -1 || end >= length) end = length;
      lineNo++;
      // A dump that passed through Windows ends its lines in CRLF; the content is the same.
      const lineEnd = end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end;
      const first = text.charCodeAt(start);
      const lineStart = start;
      start = end + 1;
      const whole = terminated || end < length;

      if (first === 45 /* - */ && text.charCodeAt(lineStart + 1) === 65 /* A */ && text.charCodeAt(lineStart + 2) === 32) {
        if (!current) {
          this.stray(lineNo);
          continue;
        }
        this.ruleCount++;
        const chain = current.chains[current.cursor];
        // Built-in chains are compared name for name. For the thousands of user-chain rules,
        // whose names matter only as counts, the same length and the same last characters (where
        // kube-proxy's and Calico's hashed names differ) mean the same chain as the line before.
        const sameChain =
          chain !== undefined && (chain.builtin ? nameAt(text, lineStart + 3, chain.name, lineEnd) : sameUserChain(text, lineStart + 3, chain.name, lineEnd));
        const found = sameChain ? chain : findChain(current, text, lineStart + 3, lineEnd);
        if (!found) {
          const nameEnd = text.indexOf(' ', lineStart + 3);
          const chainName = text.slice(lineStart + 3, nameEnd === -1 || nameEnd > lineEnd ? lineEnd : nameEnd);
          current.problem ??= `line ${lineNo}: rule for chain "${clip(chainName)}", which the table does not declare`;
          continue;
        }
        if (!found.builtin) {
          if (!whole) current.problem ??= `line ${lineNo}: the text ends in the middle of a rule`;
          continue;
        }
        const rule = parseRule(text, lineStart + 3 + found.name.length, lineEnd);
        if (!rule || !whole) {
          current.problem ??= `line ${lineNo}: rule in ${found.name} is cut short`;
          continue;
        }
        found.rules.push(rule);
        continue;
      }

      if (first === 58 /* : */) {
        if (!current) {
          this.stray(lineNo);
          continue;
        }
        const decl = parseChainDeclaration(text, lineStart + 1, lineEnd);
        if (!decl || !whole) {
          current.problem ??= `line ${lineNo}: chain declaration is cut short or malformed`;
          continue;
        }
        const builtin = decl.policy !== '-';
        current.chains.push({ name: decl.name, builtin, policy: decl.policy, rules: builtin ? [] : NO_RULES });
        current.byName = undefined;
        continue;
      }

      if (first === 42 /* * */) {
        this.sawTable = true;
        this.current = current;
        this.close(`no COMMIT before the next table (line ${lineNo})`);
        const name = text.slice(lineStart + 1, lineEnd);
        current = this.current = { name: clip(name, 32), chains: [], cursor: 0 };
        if (!/^[a-z]{1,31}$/.test(name)) current.problem = `line ${lineNo}: "${clip(name)}" is not a table name`;
        continue;
      }

      const line = text.slice(lineStart, lineEnd);
      if (line === 'COMMIT') {
        if (current) {
          this.current = current;
          this.close();
          current = undefined;
        } else this.stray(lineNo);
        continue;
      }
      if (first === 35 /* # */) {
        if (line.startsWith('# Generated by iptables')) {
          this.sawSaveHeader = true;
          this.generatedOpen = true;
        } else if (line.startsWith('# Completed on') && whole) this.generatedOpen = false;
        continue;
      }
      if (line.trim() === '') continue;
      if (IPTABLES_S_LINE.test(line)) this.sSyntaxLines++;
      if (current) current.problem ??= `line ${lineNo}: not iptables-save syntax`;
      else this.stray(lineNo);
    }
    this.current = current;
    this.lineNo = lineNo;
  }

  private verdict(): ParsedRuleset {
    const { tables, strayLines, firstStray } = this;
    if (!this.sawTable) {
      if (this.sSyntaxLines > 0) {
        return {
          verdict: 'unsupported',
          message: 'this looks like `iptables -S` output, which has no tables and loses rule order across them; send the output of `iptables-save` instead',
          ruleCount: 0,
          tables: [],
        };
      }
      if (strayLines > 0) {
        return { verdict: 'unsupported', message: `not iptables-save output: no "*table" line (first unrecognised line: ${firstStray})`, ruleCount: 0, tables: [] };
      }
      return { verdict: 'empty', message: this.sawSaveHeader ? 'iptables-save printed no tables' : 'no tables in the input', ruleCount: 0, tables: [] };
    }
    const problems: string[] = [];
    const cut = tables.filter((t) => !t.complete);
    if (cut.length) problems.push(`incomplete: ${cut.map((t) => t.name).join(', ')}`);
    if (strayLines) problems.push(`${strayLines} line(s) outside any table, the first at line ${firstStray}`);
    if (this.lastLineCut && !cut.length) problems.push('the last line has no newline: the text was cut short');
    else if (this.generatedOpen && !cut.length) problems.push('the dump stops before its "# Completed on" trailer: tables after the last COMMIT may be missing');
    if (this.extraTables) problems.push(`${this.extraTables} table(s) beyond the first ${MAX_TABLES} were left out`);
    return problems.length
      ? { verdict: 'incomplete', message: clip(problems.join('; '), LIMITS.message), ruleCount: this.ruleCount, tables }
      : { verdict: 'ok', ruleCount: this.ruleCount, tables };
  }
}

// User chains never keep rules; one shared empty array instead of one per chain.
const NO_RULES: Rule[] = [];

function finishTable(state: TableState): IptablesTable {
  const builtinChains: BuiltinChain[] = [];
  const families: Record<string, number> = {};
  const names: string[] = [];
  let namesOmitted = 0;
  for (const chain of state.chains) {
    if (chain.builtin) {
      if (builtinChains.length < 5) {
        builtinChains.push(keepHeadAndTail({ name: clip(chain.name, LIMITS.chainName), policy: chain.policy, ruleCount: chain.rules.length, rules: chain.rules }, LIMITS.rulesPerChain));
      }
      continue;
    }
    const name = chain.name;
    const family = chainFamily(name);
    if (family) families[family] = (families[family] ?? 0) + 1;
    else if (names.length < NAMES_PER_TABLE) names.push(clip(name, LIMITS.chainName));
    else namesOmitted++;
  }
  const table: IptablesTable = {
    name: state.name,
    complete: state.problem === undefined,
    builtinChains,
    userChains: namesOmitted ? { families, names, namesOmitted } : { families, names },
  };
  if (state.problem) table.problem = clip(state.problem, LIMITS.message);
  return table;
}

/**
 * Cuts a chain to at most `max` rules, keeping the head and the tail: Calico's mode shows at
 * one end or the other. `ruleCount` keeps the true length.
 */
export function keepHeadAndTail(chain: BuiltinChain, max: number): BuiltinChain {
  if (chain.rules.length <= max) return chain;
  const head = Math.ceil(max / 2);
  const tail = max - head;
  const rules = [...chain.rules.slice(0, head), ...(tail ? chain.rules.slice(-tail) : [])];
  return { ...chain, rules, omittedAfter: head };
}

/**
 * ":NAME POLICY [packets:bytes]". The counters are optional (hand-written files leave them out).
 * User chains ("-" policy) take a fast path: they are most of the declarations on a busy node.
 */
function parseChainDeclaration(text: string, from: number, to: number): { name: string; policy: string } | undefined {
  const space = text.indexOf(' ', from);
  if (space === -1 || space >= to || space === from || space - from > 64) return undefined;
  // A copy, not a slice: a slice would keep the whole chunk it came from alive for as long as the
  // parser keeps the name, which is all of a 7.5 MB ruleset.
  const name = detach(text.slice(from, space));
  const afterPolicy = text.indexOf(' ', space + 1);
  const policyEnd = afterPolicy === -1 || afterPolicy > to ? to : afterPolicy;
  // "-" (a user chain) without slicing: most declarations on a busy node are user chains.
  const policy = policyEnd === space + 2 && text.charCodeAt(space + 1) === 45 ? '-' : text.slice(space + 1, policyEnd);
  if (policy !== '-' && !/^[A-Z]{1,16}$/.test(policy)) return undefined;
  // Counters, "[packets:bytes]", when present.
  if (policyEnd < to && (text.charCodeAt(policyEnd + 1) !== 91 || text.charCodeAt(to - 1) !== 93 || to - policyEnd < 5)) return undefined;
  return { name, policy };
}

/**
 * Reads the target (`-j`/`-g`) and the first `--comment` of a rule. Quoted arguments are one token
 * (a comment may itself contain " -j "). Returns undefined when a quote is left open: the line was
 * cut short.
 */
function parseRule(text: string, from: number, to: number): Rule | undefined {
  let target = '';
  let comment: string | undefined;
  let expect: 'target' | 'comment' | undefined;
  let i = from;
  while (i < to) {
    while (i < to && text.charCodeAt(i) === 32) i++;
    if (i >= to) break;
    let token: string;
    if (text.charCodeAt(i) === 34 /* " */) {
      let j = i + 1;
      let value = '';
      let segment = j;
      for (;;) {
        if (j >= to) return undefined;
        const c = text.charCodeAt(j);
        if (c === 92 /* \ */ && j + 1 < to) {
          value += text.slice(segment, j);
          segment = j + 1;
          j += 2;
          continue;
        }
        if (c === 34) break;
        j++;
      }
      value += text.slice(segment, j);
      token = value;
      i = j + 1;
    } else {
      let j = text.indexOf(' ', i);
      if (j === -1 || j > to) j = to;
      token = text.slice(i, j);
      i = j;
    }
    if (expect === 'target') {
      target = token;
      expect = undefined;
    } else if (expect === 'comment') {
      comment ??= token;
      expect = undefined;
    } else if (token === '-j' || token === '-g') expect = 'target';
    else if (token === '--comment') expect = 'comment';
  }
  if (expect) return undefined; // "-j" or "--comment" with nothing after it: cut short
  const rule: Rule = { target: clip(target, LIMITS.chainName) };
  if (comment !== undefined) rule.comment = clip(comment, LIMITS.comment);
  return rule;
}

/** A string that shares no storage with a larger one (V8 flattens the concatenation). */
function detach(s: string): string {
  return (' ' + s).slice(1);
}

function clip(s: string, max = 64): string {
  return s.length > max ? s.slice(0, max) : s;
}
