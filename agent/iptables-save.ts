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

const NAMES_PER_TABLE = 32;
const MAX_TABLES = LIMITS.tablesPerEntry;

// Families by first character, longest prefix first, so a name is tried against a few prefixes.
const FAMILIES_BY_INITIAL = new Map<number, string[]>();
for (const prefix of [...CHAIN_FAMILIES].sort((a, b) => b.length - a.length)) {
  const list = FAMILIES_BY_INITIAL.get(prefix.charCodeAt(0)) ?? [];
  list.push(prefix);
  FAMILIES_BY_INITIAL.set(prefix.charCodeAt(0), list);
}

/** The family of the chain name text[from, to), read in place. */
function familyAt(text: string, from: number, to: number): string | undefined {
  const candidates = FAMILIES_BY_INITIAL.get(text.charCodeAt(from));
  if (candidates) for (const prefix of candidates) if (prefix.length < to - from && text.startsWith(prefix, from)) return prefix;
  return undefined;
}

// A built-in chain, or one of the few user chains outside the families: kept by name.
interface NamedChain {
  name: string;
  builtin: boolean;
  policy: string;
  rules: Rule[]; // filled for built-in chains only
}

// The chains of a table in declaration order, as parallel arrays. The thousands of family
// members (KUBE-SEP-...) are only counted, so they keep no name: their length and a signature
// (first and last three characters, where kube-proxy's and Calico's hashed names differ) are
// enough to follow their rules, which are only counted too. Nothing per family chain is a
// string or an object, so a 75,000-line ruleset leaves the garbage collector little to do.
interface TableState {
  name: string;
  lengths: number[];
  signatures: number[];
  named: (NamedChain | undefined)[];
  cursor: number; // the chain whose rules came last
  index?: Map<string, number>; // built only for input that is not in iptables-save order
  builtins: NamedChain[];
  families: Record<string, number>;
  names: string[];
  namesOmitted: number;
  problem?: string;
}

function newTable(name: string): TableState {
  return { name, lengths: [], signatures: [], named: [], cursor: 0, builtins: [], families: {}, names: [], namesOmitted: 0 };
}

/** First character and last three of text[at, at + length); length is at least 3. */
function signatureAt(text: string, at: number, length: number): number {
  const end = at + length;
  return ((text.charCodeAt(at) & 127) << 21) | ((text.charCodeAt(end - 1) & 127) << 14) | ((text.charCodeAt(end - 2) & 127) << 7) | (text.charCodeAt(end - 3) & 127);
}

/** Whether the rule's chain name at text[at] is the table's chain number i. */
function chainAt(table: TableState, i: number, text: string, at: number, lineEnd: number): boolean {
  const named = table.named[i];
  if (named) return nameAt(text, at, named.name, lineEnd);
  const length = table.lengths[i]!;
  const after = at + length;
  return (after === lineEnd || (after < lineEnd && text.charCodeAt(after) === 32)) && signatureAt(text, at, length) === table.signatures[i];
}

// iptables-save declares the chains of a table, then prints their rules chain by chain in the
// order it declared them. Following that order with a cursor finds each rule's chain by comparing
// in place, with no string slicing or hashing on the 75,000 lines of a busy node; a file written
// in another order (by hand, say) falls back to a Map. Returns the chain's number, or -1.
function findChain(table: TableState, text: string, at: number, lineEnd: number): number {
  const count = table.lengths.length;
  for (let i = table.cursor; i < count; i++) {
    if (chainAt(table, i, text, at, lineEnd)) {
      table.cursor = i;
      return i;
    }
  }
  let nameEnd = text.indexOf(' ', at);
  if (nameEnd === -1 || nameEnd > lineEnd) nameEnd = lineEnd;
  if (!table.index) {
    table.index = new Map();
    for (let i = 0; i < count; i++) table.index.set(table.named[i]?.name ?? `${table.lengths[i]}/${table.signatures[i]}`, i);
  }
  const length = nameEnd - at;
  return table.index.get(text.slice(at, nameEnd)) ?? (length >= 3 ? table.index.get(`${length}/${signatureAt(text, at, length)}`) : undefined) ?? -1;
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
        const at = lineStart + 3;
        const i = current.cursor < current.lengths.length && chainAt(current, current.cursor, text, at, lineEnd) ? current.cursor : findChain(current, text, at, lineEnd);
        if (i < 0) {
          const nameEnd = text.indexOf(' ', at);
          const chainName = text.slice(at, nameEnd === -1 || nameEnd > lineEnd ? lineEnd : nameEnd);
          current.problem ??= `line ${lineNo}: rule for chain "${clip(chainName)}", which the table does not declare`;
          continue;
        }
        const chain = current.named[i];
        if (!chain?.builtin) {
          if (!whole) current.problem ??= `line ${lineNo}: the text ends in the middle of a rule`;
          continue;
        }
        const rule = parseRule(text, at + chain.name.length, lineEnd);
        if (!rule || !whole) {
          current.problem ??= `line ${lineNo}: rule in ${chain.name} is cut short`;
          continue;
        }
        chain.rules.push(rule);
        continue;
      }

      if (first === 58 /* : */) {
        if (!current) {
          this.stray(lineNo);
          continue;
        }
        if (!whole || !declareChain(current, text, lineStart + 1, lineEnd)) {
          current.problem ??= `line ${lineNo}: chain declaration is cut short or malformed`;
        }
        continue;
      }

      if (first === 42 /* * */) {
        this.sawTable = true;
        this.current = current;
        this.close(`no COMMIT before the next table (line ${lineNo})`);
        const name = text.slice(lineStart + 1, lineEnd);
        current = this.current = newTable(clip(name, 32));
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
  const builtinChains = state.builtins
    .slice(0, 5)
    .map((chain) => keepHeadAndTail({ name: clip(chain.name, LIMITS.chainName), policy: chain.policy, ruleCount: chain.rules.length, rules: chain.rules }, LIMITS.rulesPerChain));
  const { families, names, namesOmitted } = state;
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
 * Declares the chain of ":NAME POLICY [packets:bytes]" (the counters are optional: hand-written
 * files leave them out). Returns false when the line is malformed. User chains ("-" policy) in a
 * family take the fast path: they are most of the declarations on a busy node.
 */
function declareChain(table: TableState, text: string, from: number, to: number): boolean {
  const space = text.indexOf(' ', from);
  if (space === -1 || space >= to || space === from || space - from > 64) return false;
  const afterPolicy = text.indexOf(' ', space + 1);
  const policyEnd = afterPolicy === -1 || afterPolicy > to ? to : afterPolicy;
  const userChain = policyEnd === space + 2 && text.charCodeAt(space + 1) === 45; /* "-" */
  if (!userChain && !/^[A-Z]{1,16}$/.test(text.slice(space + 1, policyEnd))) return false;
  // Counters, "[packets:bytes]", when present.
  if (policyEnd < to && (text.charCodeAt(policyEnd + 1) !== 91 || text.charCodeAt(to - 1) !== 93 || to - policyEnd < 5)) return false;
  const length = space - from;
  table.lengths.push(length);
  table.signatures.push(length >= 3 ? signatureAt(text, from, length) : -1);
  table.index = undefined;
  const family = userChain ? familyAt(text, from, space) : undefined;
  if (family) {
    table.families[family] = (table.families[family] ?? 0) + 1;
    table.named.push(undefined);
    return true;
  }
  // A copy, not a slice: a slice would keep the whole chunk it came from alive.
  const name = detach(text.slice(from, space));
  const chain: NamedChain = { name, builtin: !userChain, policy: userChain ? '-' : text.slice(space + 1, policyEnd), rules: userChain ? NO_RULES : [] };
  table.named.push(chain);
  if (chain.builtin) table.builtins.push(chain);
  else if (table.names.length < NAMES_PER_TABLE) table.names.push(clip(name, LIMITS.chainName));
  else table.namesOmitted++;
  return true;
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
