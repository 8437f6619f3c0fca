import t from 'tap';
import { LIMITS, MAX_REPORT_BYTES, NodeReport } from '../../protocol/report.js';
import { CHAIN_FAMILIES } from '../../agent/iptables-save.js';

// The largest report the schema admits: every bound at its maximum, every string at full length.
function largestReport(): NodeReport {
  const s = (n: number, c = 'x') => c.repeat(n);
  let chainsLeft = LIMITS.rulesPerReport / LIMITS.rulesPerChain;
  let namesLeft: number = LIMITS.userChainNamesPerReport;
  const entries = Array.from({ length: LIMITS.iptablesEntries }, () => ({
    family: 'ipv6' as const,
    backend: 'unknown' as const,
    source: 'dump' as const,
    verdict: 'incomplete' as const,
    message: s(LIMITS.message),
    ruleCount: Number.MAX_SAFE_INTEGER,
    tables: Array.from({ length: LIMITS.tablesPerEntry }, () => {
      const names = Array.from({ length: Math.min(namesLeft, 8) }, () => s(LIMITS.chainName));
      namesLeft -= names.length;
      return {
        name: s(32),
        complete: false,
        problem: s(LIMITS.message),
        builtinChains: Array.from({ length: chainsLeft-- > 0 ? 1 : 0 }, () => ({
          name: s(LIMITS.chainName),
          policy: s(16),
          ruleCount: Number.MAX_SAFE_INTEGER,
          rules: Array.from({ length: LIMITS.rulesPerChain }, () => ({ target: s(LIMITS.chainName), comment: s(LIMITS.comment, '"') })),
          omittedAfter: Number.MAX_SAFE_INTEGER,
        })),
        userChains: {
          families: Object.fromEntries(Array.from({ length: LIMITS.userChainFamilies }, (_, i) => [s(LIMITS.familyPrefix - 2) + String(i).padStart(2, '0'), Number.MAX_SAFE_INTEGER])),
          names,
          namesOmitted: Number.MAX_SAFE_INTEGER,
        },
      };
    }),
  }));
  return {
    schemaVersion: 2,
    agent: { version: s(64) },
    node: { name: `${s(63)}.${s(63)}.${s(63)}.${s(61)}`, cluster: s(63) },
    collectedAt: '2026-11-28T00:00:00.000Z',
    machineId: { etc: { status: 'invalid', detail: s(LIMITS.message, '"'), linkTarget: s(4096) }, dbus: { status: 'invalid', detail: s(LIMITS.message, '"'), linkTarget: s(4096) } },
    iptables: entries,
    nftTables: Array.from({ length: LIMITS.nftTables }, () => ({ family: s(16), name: s(64) })),
    illumio: { hostDataDir: true, serverVen: true },
    errors: Array.from({ length: LIMITS.errors }, () => ({ source: s(64), message: s(LIMITS.message, '"') })),
    headChanges: Array.from({ length: LIMITS.headChanges }, () => ({
      family: 'ipv6', backend: 'unknown', table: s(32), chain: s(64), from: s(64), to: s(64), at: '2026-11-28T00:00:00.000Z',
    })),
  };
}

t.test('no report the schema accepts exceeds MAX_REPORT_BYTES', async (t) => {
  const report = largestReport();
  const checked = NodeReport.safeParse(report);
  t.ok(checked.success, checked.success ? 'the largest report is valid' : checked.error.message);
  const bytes = Buffer.byteLength(JSON.stringify(report));
  t.ok(bytes <= MAX_REPORT_BYTES, `largest report is ${bytes} bytes, limit ${MAX_REPORT_BYTES}`);
  // One rule more than the total, anywhere, is refused.
  report.iptables[5]!.tables[5]!.builtinChains.push({ name: 'X', policy: 'ACCEPT', ruleCount: 1, rules: [{ target: 'X' }] });
  const over = NodeReport.safeParse(report);
  t.notOk(over.success);
  t.match(over.error?.issues[0]?.message, /built-in chain rules per report/);
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

t.test('a schema version from the future is refused', async (t) => {
  const r = NodeReport.safeParse({ ...largestReport(), schemaVersion: 3 });
  t.notOk(r.success);
  t.same(r.error?.issues[0]?.path, ['schemaVersion']);
});

t.test('chain families fit the protocol bounds', async (t) => {
  t.ok(CHAIN_FAMILIES.length <= LIMITS.userChainFamilies);
  for (const f of CHAIN_FAMILIES) t.ok(f.length <= LIMITS.familyPrefix, f);
});
