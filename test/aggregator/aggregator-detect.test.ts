// Detection is pure: reports in, findings out. Table-driven over the facts of design.md section 6.
import t from 'tap';
import type { FindingCode } from '../../protocol/findings.js';
import type { NodeReport, Rule } from '../../protocol/report.js';
import { classifyCalicoChain } from '../../aggregator/detect/calico.js';
import { findingId } from '../../aggregator/detect/finding.js';
import { DEFAULT_ILLUMIO_CHAIN_PATTERNS } from '../../aggregator/config.js';
import { compileChainPatterns } from '../../aggregator/detect/illumio.js';
import { analyzeNode } from '../../aggregator/detect/node.js';
import { ALWAYS_APPENDED, CALICO_HOOKS, buildReport, calicoRuleset, chain, ruleset, calicoTable, withChain } from '../support/reports.js';

const options = { isIllumioChain: compileChainPatterns('illumio*,ILLUMIO*') };
const codes = (report: NodeReport) => analyzeNode(report, options).findings.map((f) => f.code).sort();
const r = (target: string, comment?: string): Rule => (comment === undefined ? { target } : { target, comment });
const HOOK = CALICO_HOOKS.filter.FORWARD;

t.test('classifyCalicoChain: where Calico sits in one chain', async (t) => {
  const cases: { name: string; table: string; chain: string; rules: Rule[]; extra?: { ruleCount: number; omittedAfter: number }; mode: string; positions: number[] }[] = [
    { name: 'insert: first', table: 'filter', chain: 'INPUT', rules: [CALICO_HOOKS.filter.INPUT, r('KUBE-FIREWALL')], mode: 'insert', positions: [1] },
    { name: 'append: last', table: 'filter', chain: 'INPUT', rules: [r('KUBE-FIREWALL'), CALICO_HOOKS.filter.INPUT], mode: 'append', positions: [2] },
    { name: 'out of sync: in the middle', table: 'filter', chain: 'INPUT', rules: [r('illumio-IN'), CALICO_HOOKS.filter.INPUT, r('KUBE-FIREWALL')], mode: 'out-of-sync', positions: [2] },
    { name: 'sole: only Calico, no vote', table: 'raw', chain: 'PREROUTING', rules: [CALICO_HOOKS.raw.PREROUTING], mode: 'sole', positions: [1] },
    { name: 'unhooked', table: 'filter', chain: 'INPUT', rules: [r('KUBE-FIREWALL')], mode: 'unhooked', positions: [] },
    {
      name: 'insert with the always-appended FORWARD rules at the end',
      table: 'filter', chain: 'FORWARD', rules: [HOOK, r('KUBE-FORWARD'), ...ALWAYS_APPENDED.filterForward], mode: 'insert', positions: [1],
    },
    {
      name: 'the always-appended FORWARD rules alone are no evidence of Append',
      table: 'filter', chain: 'FORWARD', rules: [HOOK, r('KUBE-FORWARD'), r('KUBE-SERVICES'), ...ALWAYS_APPENDED.filterForward], mode: 'insert', positions: [1],
    },
    {
      name: 'append, FORWARD accept/mark rules with a non-default mark mask (other hashes)',
      table: 'filter', chain: 'FORWARD', rules: [r('KUBE-FORWARD'), HOOK, r('ACCEPT', 'cali:AAAAAAAAAAAAAAAA'), r('MARK', 'cali:BBBBBBBBBBBBBBBB')], mode: 'append', positions: [2],
    },
    {
      name: 'nat POSTROUTING: the 3.28.2+ appended jump does not make Insert look out of sync',
      table: 'nat', chain: 'POSTROUTING', rules: [CALICO_HOOKS.nat.POSTROUTING, r('KUBE-POSTROUTING'), ...ALWAYS_APPENDED.natPostrouting], mode: 'insert', positions: [1],
    },
    {
      name: 'a long chain cut in the middle: real positions',
      table: 'filter', chain: 'INPUT', rules: [r('KUBE-A'), r('KUBE-B'), r('X'), CALICO_HOOKS.filter.INPUT], extra: { ruleCount: 100, omittedAfter: 2 }, mode: 'append', positions: [100],
    },
    {
      name: 'a comment without a cali- target is Calico-owned but not a hook',
      table: 'filter', chain: 'OUTPUT', rules: [r('ACCEPT', 'cali:xxxxxxxxxxxxxxxx'), r('KUBE-FIREWALL')], mode: 'insert', positions: [1],
    },
  ];
  for (const c of cases) {
    const result = classifyCalicoChain('ipv4', 'nft', c.table, chain(c.chain, c.rules, c.extra ?? {}));
    t.equal(result.mode, c.mode, `${c.name}: mode`);
    t.same(result.calicoPositions, c.positions, `${c.name}: positions`);
  }
});

t.test('analyzeNode: one report, its findings', async (t) => {
  const cases: { name: string; report: NodeReport; codes: FindingCode[]; mode?: 'insert' | 'append' }[] = [
    { name: 'healthy node in Append mode', report: buildReport(), codes: [], mode: 'append' },
    { name: 'Insert mode, no Illumio', report: buildReport({ calico: 'insert' }), codes: ['CALICO_INSERT_MODE'], mode: 'insert' },
    {
      name: 'Insert mode with the Illumio host marker',
      report: buildReport({ calico: 'insert' }, { illumio: { hostDataDir: true, serverVen: false } }),
      codes: ['CALICO_ILLUMIO_CONFLICT'],
      mode: 'insert',
    },
    {
      name: 'Append mode with Illumio present is the goal',
      report: buildReport({}, { illumio: { hostDataDir: true, serverVen: false } }),
      codes: [],
      mode: 'append',
    },
    {
      name: 'a fight: the head went to another owner and back',
      report: (() => {
        const report = withChain(buildReport(), { table: 'filter', chain: 'INPUT' }, [r('illumio-INPUT'), CALICO_HOOKS.filter.INPUT, r('KUBE-FIREWALL')]);
        report.headChanges = [
          { family: 'ipv4', backend: 'nft', table: 'filter', chain: 'INPUT', from: 'cali-INPUT', to: 'illumio-INPUT', at: '2025-01-01T00:00:00Z' },
          { family: 'ipv4', backend: 'nft', table: 'filter', chain: 'INPUT', from: 'illumio-INPUT', to: 'cali-INPUT', at: '2025-01-01T00:00:01Z' },
        ];
        return report;
      })(),
      codes: ['CALICO_ILLUMIO_CONFLICT'],
      mode: 'append',
    },
    {
      name: 'one head change is no fight (switching Calico to Append moves every head once)',
      report: buildReport({}, { headChanges: [{ family: 'ipv4', backend: 'nft', table: 'filter', chain: 'FORWARD', from: 'cali-FORWARD', to: 'KUBE-PROXY-FIREWALL', at: '2025-01-01T00:00:00Z' }] }),
      codes: [],
      mode: 'append',
    },
    {
      name: "Illumio's rule above Calico's, which is not last: Insert mode pushed down by the VEN",
      report: withChain(buildReport(), { table: 'filter', chain: 'INPUT' }, [r('illumio-INPUT'), CALICO_HOOKS.filter.INPUT, r('KUBE-FIREWALL')]),
      codes: ['CALICO_ILLUMIO_CONFLICT'],
      mode: 'append',
    },
    { name: 'no Calico at all', report: buildReport({ calico: 'none' }), codes: [] },
    {
      name: 'Calico rules moved mid-chain',
      report: withChain(buildReport(), { table: 'filter', chain: 'INPUT' }, [r('KUBE-FIREWALL'), CALICO_HOOKS.filter.INPUT, r('KUBE-NODEPORTS')]),
      codes: ['CALICO_OUT_OF_SYNC'],
      mode: 'append',
    },
    {
      name: 'machine ID uninitialized',
      report: buildReport({}, { machineId: { etc: { status: 'uninitialized' }, dbus: { status: 'missing' } } }),
      codes: ['MACHINE_ID_INVALID'],
      mode: 'append',
    },
    {
      name: 'D-Bus copy differs and is not a link',
      report: buildReport({}, { machineId: { etc: { status: 'ok', appId: 'a'.repeat(32) }, dbus: { status: 'ok', appId: 'b'.repeat(32) } } }),
      codes: ['MACHINE_ID_DBUS_MISMATCH'],
      mode: 'append',
    },
    {
      name: 'D-Bus copy missing is fine',
      report: buildReport({}, { machineId: { etc: { status: 'ok', appId: 'a'.repeat(32) }, dbus: { status: 'missing' } } }),
      codes: [],
      mode: 'append',
    },
    { name: 'server VEN', report: buildReport({}, { illumio: { hostDataDir: true, serverVen: true } }), codes: ['ILLUMIO_SERVER_VEN'], mode: 'append' },
    {
      name: 'collection errors, one finding per source',
      report: buildReport({}, { errors: [{ source: 'iptables-nft-save', message: 'timed out' }, { source: 'iptables-nft-save', message: 'again' }, { source: 'nft', message: 'not found' }] }),
      codes: ['AGENT_COLLECTION_ERROR', 'AGENT_COLLECTION_ERROR'],
      mode: 'append',
    },
    { name: "Calico's nftables dataplane", report: buildReport({ calico: 'none' }, { nftTables: [{ family: 'ip', name: 'calico' }] }), codes: ['CALICO_NFT_DATAPLANE'] },
    {
      name: 'leftover cali- chains in the legacy backend next to an nft Calico',
      report: buildReport({}, { iptables: [calicoRuleset('ipv4'), ruleset('ipv4', [{ name: 'filter', complete: true, builtinChains: [], userChains: { families: { 'cali-fw-': 3 }, names: ['cali-INPUT'] } }], { backend: 'legacy', ruleCount: 0 })] }),
      codes: ['CALICO_STALE_CHAINS'],
      mode: 'append',
    },
    {
      name: 'rules in both backends',
      report: buildReport({}, { iptables: [calicoRuleset('ipv4'), ruleset('ipv4', [calicoTable('filter', { calico: 'none' })], { backend: 'legacy' })] }),
      codes: ['IPTABLES_MIXED_BACKENDS'],
      mode: 'append',
    },
    {
      name: 'an incomplete table: no mode verdict from it',
      report: (() => {
        const report = buildReport({ calico: 'insert' });
        report.iptables = [ruleset('ipv4', [{ ...calicoTable('filter', { calico: 'insert' }), complete: false, problem: 'no COMMIT' }], { verdict: 'incomplete' })];
        return report;
      })(),
      codes: ['IPTABLES_INCOMPLETE'],
    },
    {
      name: 'not iptables-save output at all',
      report: buildReport({}, { iptables: [ruleset('ipv4', [], { verdict: 'unsupported', message: 'looks like iptables -S', ruleCount: 0 })] }),
      codes: ['IPTABLES_INCOMPLETE'],
    },
    {
      name: "another product's jump at the head of a Calico-hooked chain",
      report: (() => {
        const report = withChain(buildReport(), { table: 'filter', chain: 'FORWARD' }, [r('DOCKER-USER'), r('KUBE-FORWARD'), HOOK, ...ALWAYS_APPENDED.filterForward]);
        report.iptables[0]!.tables.find((x) => x.name === 'filter')!.userChains.names.push('DOCKER-USER');
        return report;
      })(),
      codes: ['FOREIGN_HEAD_RULE'],
      mode: 'append',
    },
    {
      name: "Illumio's jump at the head is what coexistence wants",
      report: (() => {
        const report = withChain(buildReport(), { table: 'filter', chain: 'FORWARD' }, [r('illumio-FWD'), r('KUBE-FORWARD'), HOOK, ...ALWAYS_APPENDED.filterForward]);
        report.iptables[0]!.tables.find((x) => x.name === 'filter')!.userChains.names.push('illumio-FWD');
        return report;
      })(),
      codes: [],
      mode: 'append',
    },
  ];
  for (const c of cases) {
    const analysis = analyzeNode(c.report, options);
    t.same(analysis.findings.map((f) => f.code).sort(), [...c.codes].sort(), `${c.name}: codes`);
    t.equal(analysis.calicoMode, c.mode, `${c.name}: node mode`);
    for (const f of analysis.findings) {
      t.same(f.nodes, [c.report.node.name], `${c.name}: ${f.code} names the node`);
      t.ok(f.message.length > 0 && f.remediation.length > 0, `${c.name}: ${f.code} has a message and a remediation`);
    }
  }
});

t.test('evidence says which table, chain and position', async (t) => {
  const [insert] = analyzeNode(buildReport({ calico: 'insert' }), options).findings;
  const chains = insert!.evidence.chains as { family: string; table: string; chain: string; positions: number[] }[];
  t.ok(chains.some((c) => c.family === 'ipv4' && c.table === 'filter' && c.chain === 'FORWARD' && c.positions[0] === 1));
  t.notOk(chains.some((c) => c.table === 'raw'), 'chains where Calico is alone do not vote');

  const outOfSync = analyzeNode(withChain(buildReport(), { table: 'nat', chain: 'PREROUTING' }, [r('KUBE-A'), CALICO_HOOKS.nat.PREROUTING, r('KUBE-SERVICES')]), options).findings[0]!;
  t.match(outOfSync.evidence, { family: 'ipv4', backend: 'nft', table: 'nat', chain: 'PREROUTING', calicoPositions: [2], ruleCount: 3 });
});

t.test('Illumio known present, its chains unnamed: an unknown head above Calico is taken to be the VEN', async (t) => {
  // The shipped patterns are placeholders: a real VEN's chains match none of them.
  const placeholders = { isIllumioChain: compileChainPatterns(DEFAULT_ILLUMIO_CHAIN_PATTERNS) };
  const marker = { illumio: { hostDataDir: true, serverVen: false } };
  // The VEN's jump first in filter FORWARD (a chain the patterns do not name), Calico appended.
  const venFirst = (overrides: Partial<NodeReport> = {}) => {
    const report = withChain(buildReport({}, overrides), { table: 'filter', chain: 'FORWARD' }, [r('VEN-FWD'), r('KUBE-FORWARD'), HOOK, ...ALWAYS_APPENDED.filterForward]);
    report.iptables[0]!.tables.find((x) => x.name === 'filter')!.userChains.names.push('VEN-FWD');
    return report;
  };

  const desired = analyzeNode(venFirst(marker), placeholders);
  t.same(desired.findings.map((f) => f.code), [], 'the layout the guide asks for raises nothing');
  t.equal(desired.calicoMode, 'append');
  t.same(
    desired.chainHeads.filter((h) => h.table === 'filter' && h.chain === 'FORWARD' && h.family === 'ipv4'),
    [{ family: 'ipv4', backend: 'nft', table: 'filter', chain: 'FORWARD', target: 'VEN-FWD', owner: 'illumio-presumed' }],
    'the analysis records which chain heads the chain, and whose it is taken to be',
  );
  t.match(desired.chainHeads.find((h) => h.table === 'filter' && h.chain === 'INPUT'), { target: 'KUBE-PROXY-FIREWALL', owner: 'kubernetes' });

  const fromApi = analyzeNode(venFirst(), placeholders, { illumioFromApi: true });
  t.same(fromApi.findings.map((f) => f.code), [], 'the same when the cluster view saw a C-VEN pod on the node');
  t.equal(fromApi.chainHeads.find((h) => h.target === 'VEN-FWD')?.owner, 'illumio-presumed');

  const unknown = analyzeNode(venFirst(), placeholders);
  t.same(unknown.findings.map((f) => f.code), ['FOREIGN_HEAD_RULE'], 'Illumio not known to run there: a foreign head');
  t.equal(unknown.chainHeads.find((h) => h.target === 'VEN-FWD')?.owner, 'other');

  // The patterns name the VEN's chains on this node (illumio-INPUT): then they decide, and an
  // unknown head is another product's, which the VEN will contend with.
  const named = venFirst(marker);
  named.iptables[0]!.tables.find((x) => x.name === 'filter')!.userChains.names.push('illumio-INPUT');
  t.same(analyzeNode(named, placeholders).findings.map((f) => f.code), ['FOREIGN_HEAD_RULE'], 'named chains elsewhere: VEN-FWD is not the VEN');
});

t.test('Illumio pushed Calico down (Insert mode, displaced): CALICO_ILLUMIO_CONFLICT with the default patterns', async (t) => {
  const placeholders = { isIllumioChain: compileChainPatterns(DEFAULT_ILLUMIO_CHAIN_PATTERNS) };
  const displacedReport = (overrides: Partial<NodeReport> = {}) => {
    const report = withChain(buildReport({}, overrides), { table: 'filter', chain: 'INPUT' }, [r('VEN-IN'), CALICO_HOOKS.filter.INPUT, r('KUBE-FIREWALL')]);
    report.iptables[0]!.tables.find((x) => x.name === 'filter')!.userChains.names.push('VEN-IN');
    return report;
  };
  const present = analyzeNode(displacedReport({ illumio: { hostDataDir: true, serverVen: false } }), placeholders);
  t.same(present.findings.map((f) => f.code), ['CALICO_ILLUMIO_CONFLICT']);
  const conflict = present.findings[0]!;
  t.match(conflict.message, /Illumio's rule is above Calico's .*ipv4\/nft filter INPUT.*taken to be Illumio's/);
  t.match(conflict.evidence, {
    displacedChains: [{ family: 'ipv4', table: 'filter', chain: 'INPUT', calicoPositions: [2], head: 'VEN-IN', headOwner: 'illumio-presumed' }],
    presumedIllumioHeads: [{ table: 'filter', chain: 'INPUT', target: 'VEN-IN', owner: 'illumio-presumed' }],
  });
  // Without Illumio on the node, the same rules are another product above an out-of-sync Calico.
  t.same(analyzeNode(displacedReport(), placeholders).findings.map((f) => f.code).sort(), ['CALICO_OUT_OF_SYNC', 'FOREIGN_HEAD_RULE']);
});

t.test('a fight names both writers, how often and for how long; without writers, the chains', async (t) => {
  const fight = (by: { calico?: string; other?: string }) => {
    const report = withChain(buildReport(), { table: 'filter', chain: 'INPUT' }, [r('illumio-INPUT'), CALICO_HOOKS.filter.INPUT, r('KUBE-FIREWALL')]);
    // Six flips in five minutes, one a minute: the VEN takes the head, Felix takes it back.
    report.headChanges = Array.from({ length: 6 }, (_, i) => {
      const toOther = i % 2 === 0;
      const writer = toOther ? by.other : by.calico;
      return {
        family: 'ipv4' as const, backend: 'nft' as const, table: 'filter', chain: 'INPUT',
        from: toOther ? 'cali-INPUT' : 'illumio-INPUT', to: toOther ? 'illumio-INPUT' : 'cali-INPUT',
        at: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString(), ...(writer ? { by: writer } : {}),
      };
    });
    return analyzeNode(report, options).findings.find((f) => f.code === 'CALICO_ILLUMIO_CONFLICT');
  };
  const named = fight({ calico: 'iptables-nft-re', other: 'illumio-ven' });
  t.equal(named?.message, 'iptables-nft-re (cali-INPUT) and illumio-ven (illumio-INPUT) took the head of filter INPUT from each other 6 times in 5 minutes, on node-a: two products are fighting for the top');
  t.match(named?.evidence, { fightingChains: ['ipv4/nft/filter/INPUT'], headChanges: [{ to: 'illumio-INPUT', by: 'illumio-ven' }, { to: 'cali-INPUT', by: 'iptables-nft-re' }] });
  // An agent before writers' names (or the legacy backend): the chains say who.
  t.equal(fight({})?.message, 'cali-INPUT and illumio-INPUT took the head of filter INPUT from each other 6 times in 5 minutes, on node-a: two products are fighting for the top');
  t.match(fight({ other: 'illumio-ven' })?.message, /^cali-INPUT and illumio-ven \(illumio-INPUT\) took the head/, 'one side known');
});

t.test('Illumio presence from ILLUMIO_CHAIN_PATTERNS', async (t) => {
  const report = buildReport({ calico: 'insert' });
  report.iptables[0]!.tables.find((x) => x.name === 'filter')!.userChains.names.push('VEN-INPUT');
  t.same(codes(report), ['CALICO_INSERT_MODE'], 'unknown to the default patterns');
  t.same(analyzeNode(report, { isIllumioChain: compileChainPatterns('VEN-*') }).findings.map((f) => f.code), ['CALICO_ILLUMIO_CONFLICT'], 'configured');
});

t.test('compileChainPatterns', async (t) => {
  const cases: [string, string, boolean][] = [
    ['illumio', 'illumio-INPUT', true],
    ['illumio', 'xillumio', false],
    ['illumio*', 'illumio', true],
    ['*-ILO', 'INPUT-ILO', true],
    ['*-ILO', 'INPUT-ILO-2', false],
    ['a?c', 'abc', true],
    ['a.c', 'abc', false],
    ['', 'anything', false],
    [' ven- , ILO_ ', 'ILO_X', true],
  ];
  for (const [spec, name, expected] of cases) t.equal(compileChainPatterns(spec)(name), expected, `${JSON.stringify(spec)} vs ${name}`);
});

t.test('finding ids are stable for the same problem and differ between problems', async (t) => {
  const a = analyzeNode(buildReport({ name: 'n1', calico: 'insert' }), options).findings[0]!;
  const again = analyzeNode(buildReport({ name: 'n1', calico: 'insert' }), options).findings[0]!;
  const other = analyzeNode(buildReport({ name: 'n2', calico: 'insert' }), options).findings[0]!;
  t.equal(a.id, again.id);
  t.not(a.id, other.id);
  t.equal(a.id, findingId('CALICO_INSERT_MODE', ['n1']));
  t.match(a.id, /^[0-9a-f]{16}$/);
});

t.test('a table with another program\'s nft base chains: IPTABLES_INCOMPLETE names them and says where to look', async (t) => {
  const myinput = { name: 'myinput', type: 'filter' as const, hook: 'input' as const, priority: 5, policy: 'accept' as const, ruleCount: 1 };
  const input = { name: 'INPUT', type: 'filter' as const, hook: 'input' as const, priority: 0, policy: 'accept' as const, ruleCount: 2 };
  const report = buildReport({ calico: 'append' });
  const filter = { ...calicoTable('filter', { calico: 'append' }), complete: false, problem: 'iptables-nft-save leaves out base chains of this table; nft shows myinput', nftBaseChains: [input, myinput] };
  report.iptables = [ruleset('ipv6', [filter], { verdict: 'incomplete' })];
  const [finding] = analyzeNode(report, options).findings.filter((f) => f.code === 'IPTABLES_INCOMPLETE');
  t.match(finding!.remediation, /^Another program created base chains with nft in iptables' own filter table: myinput \(hook input, priority 5, 1 rule\(s\)\)\. /, 'its own INPUT is not named');
  t.match(finding!.remediation, /`nft list table ip6 filter`/);
  t.same(finding!.evidence.nftBaseChains, [input, myinput]);
  t.match(finding!.message, /nft shows myinput/);
  // The same table with iptables' own chains only (an unreadable one): the usual remediation.
  filter.nftBaseChains = [input];
  const [plain] = analyzeNode(report, options).findings.filter((f) => f.code === 'IPTABLES_INCOMPLETE');
  t.match(plain!.remediation, /agent's iptables is older than the one that wrote the rules/);
});
