import fc from 'fast-check';
import t from 'tap';
import { LIMITS, MAX_REPORT_BYTES, NodeReport } from '../../protocol/report.js';
import { PRINTABLE, printable } from '../../protocol/text.js';
import { CHAIN_FAMILIES } from '../../agent/iptables-save.js';
import { propertySeed } from '../support/fast-check.js';

// The largest report the schema admits: every array at its bound, every string at full length,
// every free-text string made of `fill`, every enum at its longest value. Names the schema
// restricts to DNS-1123 or to ASCII are at their costliest there.
function largestReport(fill = WORST): NodeReport {
  // n code units of c (a surrogate pair is two).
  const s = (n: number, c = fill) => c.repeat(Math.floor(n / c.length));
  const tablesTotal = LIMITS.iptablesEntries * LIMITS.tablesPerEntry;
  let rulesLeft: number = LIMITS.rulesPerReport;
  let namesLeft: number = LIMITS.userChainNamesPerReport;
  let baseChainsLeft: number = LIMITS.nftBaseChainsPerReport;
  const entries = Array.from({ length: LIMITS.iptablesEntries }, () => ({
    family: 'ipv6' as const,
    backend: 'unknown' as const,
    source: 'dump' as const,
    verdict: 'unsupported' as const,
    message: s(LIMITS.message),
    ruleCount: Number.MAX_SAFE_INTEGER,
    tables: Array.from({ length: LIMITS.tablesPerEntry }, () => {
      const names = Array.from({ length: Math.min(namesLeft, Math.ceil(LIMITS.userChainNamesPerReport / tablesTotal)) }, () => s(LIMITS.chainName));
      namesLeft -= names.length;
      const baseChains = Math.min(baseChainsLeft, LIMITS.nftBaseChainsPerTable);
      baseChainsLeft -= baseChains;
      return {
        name: s(32),
        complete: false,
        problem: s(LIMITS.message),
        // Five built-in chains in every table, rules or not: an empty chain still has a name.
        builtinChains: Array.from({ length: 5 }, () => {
          const rules = Math.min(rulesLeft, LIMITS.rulesPerChain);
          rulesLeft -= rules;
          return {
            name: 'P'.repeat(16),
            policy: 'A'.repeat(16),
            ruleCount: Number.MAX_SAFE_INTEGER,
            rules: Array.from({ length: rules }, () => ({ target: s(LIMITS.chainName), comment: s(LIMITS.comment) })),
            omittedAfter: Number.MAX_SAFE_INTEGER,
          };
        }),
        userChains: {
          // Printable ASCII only (the agent's own prefixes): `"` is the costliest there.
          families: Object.fromEntries(Array.from({ length: LIMITS.userChainFamilies }, (_, i) => ['"'.repeat(LIMITS.familyPrefix - 2) + String(i).padStart(2, '0'), Number.MAX_SAFE_INTEGER])),
          names,
          namesOmitted: Number.MAX_SAFE_INTEGER,
        },
        nftBaseChains: Array.from({ length: baseChains }, () => ({
          name: s(LIMITS.chainName), type: 'filter' as const, hook: 'postrouting' as const, priority: -2147483648, policy: 'accept' as const, ruleCount: Number.MAX_SAFE_INTEGER,
        })),
      };
    }),
  }));
  const machineIdFile = () => ({ status: 'uninitialized' as const, appId: 'f'.repeat(32), detail: s(LIMITS.message), linkTarget: s(LIMITS.linkTarget) });
  return {
    schemaVersion: 2,
    agent: { version: s(64) },
    node: { name: `${'x'.repeat(63)}.${'x'.repeat(63)}.${'x'.repeat(63)}.${'x'.repeat(61)}`, cluster: 'x'.repeat(63) },
    collectedAt: LONGEST_TIME,
    machineId: { etc: machineIdFile(), dbus: machineIdFile() },
    iptables: entries,
    nftTables: Array.from({ length: LIMITS.nftTables }, () => ({ family: s(16), name: s(64) })),
    illumio: { hostDataDir: true, serverVen: true },
    errors: Array.from({ length: LIMITS.errors }, () => ({ source: s(64), message: s(LIMITS.message) })),
    headChanges: Array.from({ length: LIMITS.headChanges }, () => ({
      family: 'ipv6', backend: 'unknown', table: s(32), chain: 'P'.repeat(16), from: s(LIMITS.chainName), to: s(LIMITS.chainName), at: LONGEST_TIME, by: s(LIMITS.processName),
    })),
  };
}

// Any number of fraction digits is ISO-8601; the bound is on the length.
const LONGEST_TIME = `2026-11-28T00:00:00.${'0'.repeat(LIMITS.timestamp - 21)}Z`;
const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

// The costliest code unit a report may hold: a 3-byte character of the Basic Multilingual Plane.
const WORST = '\u20ac'; // €

t.test('no code unit the schema admits costs more than 3 bytes of JSON', async (t) => {
  let worst = 0;
  let admitted = 0;
  for (let unit = 0; unit <= 0xffff; unit++) {
    const c = String.fromCharCode(unit);
    if (!PRINTABLE.test(c)) continue; // controls, DEL and lone surrogates: refused (below)
    admitted++;
    worst = Math.max(worst, jsonBytes(c) - 2);
  }
  t.equal(worst, 3);
  t.equal(jsonBytes(WORST) - 2, 3, 'the fill of the largest report is one of the costliest');
  t.equal(admitted, 0x10000 - 0x20 - 1 - 0x800, 'all but C0, DEL and the surrogates');
  t.ok(jsonBytes('\ud834\udd1e') - 2 <= 2 * 3, 'a surrogate pair: 4 bytes for 2 units');
});

t.test('no report the schema accepts exceeds MAX_REPORT_BYTES', async (t) => {
  // `"` and `\` cost 2 bytes each once escaped, a surrogate pair 4 for 2 units; 3-byte characters cost more.
  for (const fill of [WORST, '"', '\\', '\u{1D11E}']) {
    const report = largestReport(fill);
    const checked = NodeReport.safeParse(report);
    t.ok(checked.success, checked.success ? `the largest report of ${JSON.stringify(fill)} is valid` : String(checked.error.issues[0]?.message));
    const bytes = jsonBytes(report);
    t.ok(bytes <= MAX_REPORT_BYTES, `the largest report of ${JSON.stringify(fill)} is ${bytes} bytes, limit ${MAX_REPORT_BYTES}`);
  }
  // One rule more than the total, anywhere, is refused.
  const report = largestReport();
  report.iptables.at(-1)!.tables.at(-1)!.builtinChains.at(-1)!.rules.push({ target: 'X' });
  const over = NodeReport.safeParse(report);
  t.notOk(over.success);
  t.match(over.error?.issues[0]?.message, /built-in chain rules per report/);
  // And one nft base chain more than the total.
  const chains = largestReport();
  chains.iptables.at(-1)!.tables.at(-1)!.nftBaseChains = [chains.iptables[0]!.tables[0]!.nftBaseChains![0]!];
  const tooMany = NodeReport.safeParse(chains);
  t.notOk(tooMany.success);
  t.match(tooMany.error?.issues[0]?.message, /at most 16 nft base chains per report, got 17/);
});

t.test('timestamps are bounded too: ISO-8601 admits any number of fraction digits', async (t) => {
  const report = largestReport('x');
  t.ok(NodeReport.safeParse(report).success);
  report.collectedAt = LONGEST_TIME.replace('Z', '0Z');
  t.same(NodeReport.safeParse(report).error?.issues.map((i) => i.path), [['collectedAt']]);
});

t.test('control characters, DEL and lone surrogates are refused in every string, with the path', async (t) => {
  // Each would be a 6-byte escape on the wire: a report of them could be six times the limit.
  const cases: [string, (r: NodeReport, bad: string) => void, (string | number)[]][] = [
    ['agent version', (r, bad) => (r.agent.version = bad), ['agent', 'version']],
    ['rule comment', (r, bad) => (r.iptables[0]!.tables[0]!.builtinChains[0]!.rules[0]!.comment = bad), ['iptables', 0, 'tables', 0, 'builtinChains', 0, 'rules', 0, 'comment']],
    ['error message', (r, bad) => (r.errors[0]!.message = bad), ['errors', 0, 'message']],
    ['link target', (r, bad) => (r.machineId.dbus.linkTarget = bad), ['machineId', 'dbus', 'linkTarget']],
    ['chain family (a record key)', (r, bad) => (r.iptables[0]!.tables[0]!.userChains.families = { [bad]: 1 }), ['iptables', 0, 'tables', 0, 'userChains', 'families']],
    ['nft table name', (r, bad) => (r.nftTables[0]!.name = bad), ['nftTables', 0, 'name']],
    ['head change', (r, bad) => (r.headChanges![0]!.from = bad), ['headChanges', 0, 'from']],
    ["head change's writer", (r, bad) => (r.headChanges![0]!.by = bad), ['headChanges', 0, 'by']],
  ];
  for (const bad of ['a\u0000b', 'tab\there', 'del\u007f', 'lone \ud800 high', 'lone \udfff low']) {
    for (const [what, set, path] of cases) {
      const report = largestReport('x');
      set(report, bad);
      const r = NodeReport.safeParse(report);
      t.notOk(r.success, `${what} with ${JSON.stringify(bad)}: refused`);
      t.same(r.error?.issues[0]?.path.slice(0, path.length), path, `${what}: the path`);
    }
  }
  const report = largestReport('x');
  report.errors[0]!.message = 'a surrogate pair \ud834\udd1e is a character';
  t.ok(NodeReport.safeParse(report).success, 'a well-formed surrogate pair is fine');
});

t.test('printable() makes any string admissible, one code unit for one', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) => {
      const p = printable(s);
      return p.length === s.length && PRINTABLE.test(p) && (PRINTABLE.test(s) ? p === s : p !== s);
    }),
    { numRuns: 2000, seed: propertySeed(t) },
  );
  t.equal(printable('a\u0000\u001f\u007f\ud800z'), 'a\ufffd\ufffd\ufffd\ufffdz');
  t.equal(printable('ok \ud834\udd1e'), 'ok \ud834\udd1e');
});

t.test('unknown fields are rejected at every level, with the path', async (t) => {
  const base = largestReport();
  const top = NodeReport.safeParse({ ...base, extra: 1 });
  t.notOk(top.success);
  const nested = structuredClone(base) as unknown as { machineId: { etc: Record<string, unknown> } };
  nested.machineId.etc.color = 'red';
  const r = NodeReport.safeParse(nested);
  t.notOk(r.success);
  t.same(r.error?.issues[0]?.path, ['machineId', 'etc']);
});

t.test("a head change's writer is optional (an agent before it, the legacy backend), and bounded", async (t) => {
  const report = largestReport('x');
  for (const change of report.headChanges!) delete change.by;
  t.ok(NodeReport.safeParse(report).success, 'without');
  report.headChanges![0]!.by = 'x'.repeat(LIMITS.processName + 1);
  t.same(NodeReport.safeParse(report).error?.issues[0]?.path, ['headChanges', 0, 'by'], 'longer than a comm can be: refused');
});

t.test('a schema version from the future is refused', async (t) => {
  const r = NodeReport.safeParse({ ...largestReport(), schemaVersion: 3 });
  t.notOk(r.success);
  t.same(r.error?.issues[0]?.path, ['schemaVersion']);
});

t.test('chain families fit the protocol bounds', async (t) => {
  t.ok(CHAIN_FAMILIES.length <= LIMITS.userChainFamilies);
  for (const f of CHAIN_FAMILIES) t.ok(f.length <= LIMITS.familyPrefix && /^[!-~]+$/.test(f), f);
});
