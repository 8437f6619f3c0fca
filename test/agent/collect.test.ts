// The built nodeprep-agent, run as a process: `collect --from-dump` on every fixture, and the real
// collection inside network namespaces whose rules the test loaded with iptables-restore.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { NodeReport } from '../../protocol/report.js';
import { AGENT_BIN, HOST_FIXTURES, IPTABLES_FIXTURES, builtinTargetsOf, expected, realDumps } from '../support/fixtures.js';
import { createNetns, netnsUnavailable } from '../support/netns.js';
import { nftTablesEvery } from '../../agent/collect-nft.js';

function collect(args: string[], netns?: string) {
  const argv = ['node', AGENT_BIN, 'collect', ...args];
  const run = netns ? spawnSync('ip', ['netns', 'exec', netns, ...argv], { encoding: 'utf8' }) : spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  return { status: run.status, stderr: run.stderr, report: run.stdout ? (JSON.parse(run.stdout) as NodeReport) : undefined };
}

t.test('collect --from-dump prints a valid report for every fixture, bad ones included', async (t) => {
  for (const [file, want] of Object.entries(expected.iptables)) {
    const { status, report, stderr } = collect(['--node-name', 'n1', '--host-root', path.join(HOST_FIXTURES, 'unique'), '--from-dump', `ipv4/nft=${path.join(IPTABLES_FIXTURES, file)}`]);
    t.equal(status, 0, `${file}: exit 0 ${stderr}`);
    t.ok(NodeReport.safeParse(report).success, `${file}: valid NodeReport v1`);
    t.equal(report?.iptables[0]?.verdict, want.verdict, `${file}: verdict`);
    t.equal(report?.iptables[0]?.source, 'dump');
  }
});

t.test('collect reads the host root it is given', async (t) => {
  for (const [host, want] of Object.entries(expected.hosts)) {
    const { report } = collect(['--node-name', host, '--host-root', path.join(HOST_FIXTURES, host), '--from-dump', path.join(IPTABLES_FIXTURES, 'calico-insert.v4.nft.txt')]);
    t.equal(report?.machineId.etc.status, want.etc, `${host}: etc`);
    t.equal(report?.machineId.dbus.status, want.dbus, `${host}: dbus`);
    if (want.illumio) t.same(report?.illumio, want.illumio, `${host}: Illumio markers`);
  }
});

t.test('nothing at all to collect: a report that says so, and exit 1', async (t) => {
  const { status, report, stderr } = collect(['--host-root', '/nonexistent', '--from-dump', '/nonexistent/dump.txt']);
  t.equal(status, 1);
  t.match(stderr, /nothing could be collected/);
  t.match(report?.errors[0]?.message, /ENOENT/);
});

t.test('real collection in network namespaces', async (t) => {
  const why = netnsUnavailable();
  if (why) return t.plan(0, why);

  t.test('nft backend, IPv4 and IPv6: the order iptables-restore loaded', async (t) => {
    const ns = createNetns();
    t.teardown(() => ns.remove());
    const v4 = realDumps().find((d) => d.name === 'foreign-first-insert.v4.nft')!;
    const v6 = realDumps().find((d) => d.name === 'calico-insert.v6.nft')!;
    ns.exec('iptables-nft-restore', [], v4.rules);
    ns.exec('ip6tables-nft-restore', [], v6.rules);
    // What Felix's nftables dataplane and kube-proxy's nftables mode would leave.
    ns.exec('nft', ['add', 'table', 'ip', 'calico']);
    ns.exec('nft', ['add', 'table', 'ip6', 'kube-proxy']);
    ns.exec('nft', ['add', 'table', 'inet', 'calico']);
    const { status, report } = collect(['--node-name', 'ns-node', '--host-root', path.join(HOST_FIXTURES, 'unique')], ns.name);
    t.equal(status, 0);
    t.ok(NodeReport.safeParse(report).success, 'valid report');
    for (const [family, d] of [['ipv4', v4], ['ipv6', v6]] as const) {
      const set = report!.iptables.find((s) => s.family === family && s.backend === 'nft' && s.source === 'host');
      t.equal(set?.verdict, 'ok', `${family}: verdict`);
      const seen = new Map<string, string[]>(set!.tables.flatMap((tb) => tb.builtinChains.map((c) => [`${tb.name}/${c.name}`, c.rules.map((r) => r.target)] as const)));
      for (const [chain, targets] of builtinTargetsOf(d.rules)) t.same(seen.get(chain), targets, `${family} ${chain}`);
    }
    t.same(report!.nftTables, [{ family: 'ip', name: 'calico' }, { family: 'ip6', name: 'kube-proxy' }], 'the watched tables that exist, and only they (inet calico is no dataplane\'s)');
    t.notOk(report!.iptables.some((s) => s.backend === 'legacy'), 'no legacy tables loaded, so no legacy save');
  });

  t.test('a table iptables-nft-save cannot read is reported unreadable, the others whole', async (t) => {
    const ns = createNetns();
    t.teardown(() => ns.remove());
    ns.exec('iptables-nft-restore', [], realDumps().find((d) => d.name === 'calico-insert.v4.nft')!.rules);
    // nft's own conntrack expression, which iptables-nft cannot turn back into iptables syntax.
    ns.exec('nft', ['add', 'rule', 'ip', 'filter', 'INPUT', 'ct', 'state', 'established,related', 'accept']);
    const { status, report } = collect(['--node-name', 'n', '--host-root', path.join(HOST_FIXTURES, 'unique')], ns.name);
    t.equal(status, 0);
    t.ok(NodeReport.safeParse(report).success, 'valid report');
    const set = report!.iptables.find((s) => s.family === 'ipv4' && s.backend === 'nft')!;
    t.equal(set.verdict, 'incomplete');
    t.match(set.tables.find((x) => x.name === 'filter'), { complete: false, builtinChains: [], problem: /iptables-nft-save cannot read this table/ });
    t.same(set.tables.filter((x) => x.complete).map((x) => x.name).sort(), ['mangle', 'nat', 'raw']);
    t.notOk(report!.errors.some((e) => e.source === 'iptables-nft-save'), 'the save itself worked: a table, not the source, is unreadable');
  });

  t.test('a base chain iptables does not know: the table is not whole, and nft\'s chain is reported with its hook and priority', async (t) => {
    const ns = createNetns();
    t.teardown(() => ns.remove());
    // The namespace of issue 20 (and of make-fixtures.sh's nft-base-chain-filter).
    ns.exec('nft', ['add', 'table', 'ip', 'filter']);
    ns.exec('nft', ['add', 'chain', 'ip', 'filter', 'myinput', '{ type filter hook input priority 5; }']);
    ns.exec('nft', ['add', 'rule', 'ip', 'filter', 'myinput', 'accept']);
    ns.exec('iptables-nft', ['-t', 'nat', '-A', 'POSTROUTING', '-s', '10.244.0.0/16', '-j', 'MASQUERADE']);
    const before = ns.exec('nft', ['list', 'ruleset']);
    const { status, report } = collect(['--node-name', 'n', '--host-root', path.join(HOST_FIXTURES, 'unique')], ns.name);
    t.equal(status, 0);
    t.ok(NodeReport.safeParse(report).success, 'valid report');
    const set = report!.iptables.find((s) => s.family === 'ipv4' && s.backend === 'nft')!;
    t.equal(set.verdict, 'incomplete', 'incomplete: the filter table is not whole');
    const filter = set.tables.find((x) => x.name === 'filter')!;
    t.match(filter, { complete: false, problem: /^iptables-nft-save leaves out base chains of this table; nft shows myinput \(filter hook input priority 5, 1 rule\); INPUT, FORWARD, OUTPUT, which iptables-nft-save printed, do not exist$/ });
    t.same(filter.builtinChains, [], 'none of the chains iptables-nft-save declared exists');
    t.same(filter.nftBaseChains, [{ name: 'myinput', type: 'filter', hook: 'input', priority: 5, policy: 'accept', ruleCount: 1 }]);
    const nat = set.tables.find((x) => x.name === 'nat')!;
    t.equal(nat.complete, true);
    t.same(nat.builtinChains.find((c) => c.name === 'POSTROUTING')?.rules, [{ target: 'MASQUERADE' }]);
    t.same(report!.errors, [], 'nothing failed');
    t.equal(ns.exec('nft', ['list', 'ruleset']), before, 'the agent changed nothing');
  });

  t.test('no legacy tables: the legacy save never runs, so the kernel creates none', async (t) => {
    const ns = createNetns();
    t.teardown(() => ns.remove());
    ns.exec('iptables-nft-restore', [], realDumps().find((d) => d.name === 'calico-append.v4.nft')!.rules);
    t.equal(ns.exec('cat', ['/proc/net/ip_tables_names']).trim(), '', 'no legacy tables before');
    collect(['--node-name', 'n', '--host-root', path.join(HOST_FIXTURES, 'unique')], ns.name);
    t.equal(ns.exec('cat', ['/proc/net/ip_tables_names']).trim(), '', 'still none after the agent ran');
    // The control: a legacy save does create tables where there were none.
    ns.exec('iptables-legacy-save', ['-t', 'nat']);
    t.equal(ns.exec('cat', ['/proc/net/ip_tables_names']).trim(), 'nat', 'iptables-legacy-save -t nat creates the nat table');
  });

  t.test('legacy and nft both loaded: both collected, each with its rules', async (t) => {
    const ns = createNetns();
    t.teardown(() => ns.remove());
    ns.exec('iptables-nft-restore', [], realDumps().find((d) => d.name === 'calico-insert.v4.nft')!.rules);
    ns.exec('iptables-legacy-restore', [], realDumps().find((d) => d.name === 'docker.v4.legacy')!.rules);
    const { report } = collect(['--node-name', 'n', '--host-root', path.join(HOST_FIXTURES, 'unique')], ns.name);
    const legacy = report!.iptables.find((s) => s.family === 'ipv4' && s.backend === 'legacy');
    const nft = report!.iptables.find((s) => s.family === 'ipv4' && s.backend === 'nft');
    t.equal(legacy?.ruleCount, 5);
    t.equal(nft?.ruleCount, 67);
    t.same(legacy?.tables.map((x) => x.name).sort(), ['filter', 'nat']);
  });

  t.test('a missing binary is an error entry, and the rest is still reported', async (t) => {
    const ns = createNetns();
    t.teardown(() => ns.remove());
    // A PATH with nothing on it: no iptables, no nft (ip and node are named by full path).
    const ip = execFileSync('sh', ['-c', 'command -v ip'], { encoding: 'utf8' }).trim();
    const emptyDir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-nopath-'));
    t.teardown(() => rmSync(emptyDir, { recursive: true, force: true }));
    const run = spawnSync(ip, ['netns', 'exec', ns.name, process.execPath, AGENT_BIN, 'collect', '--node-name', 'n', '--host-root', path.join(HOST_FIXTURES, 'unique')], {
      encoding: 'utf8',
      env: { ...process.env, PATH: emptyDir },
    });
    const report = JSON.parse(run.stdout) as NodeReport;
    t.equal(run.status, 0, 'the machine ID alone is worth a report');
    t.equal(report.machineId.etc.status, 'ok');
    t.ok(report.errors.some((e) => e.source === 'iptables-nft-save' && /command not found/.test(e.message)));
    t.ok(report.errors.some((e) => e.source === 'nft'));
  });
});

t.test('nft is asked again only after the interval, and at once after an error', async (t) => {
  let now = 0;
  let calls = 0;
  const answers = [
    { tables: [{ family: 'ip', name: 'calico' }], errors: [] },
    { tables: [], errors: [{ source: 'nft', message: 'nft: permission denied' }] },
    { tables: [], errors: [] },
  ];
  const every = nftTablesEvery(60_000, async () => answers[Math.min(calls++, answers.length - 1)]!, () => now);
  t.same((await every()).tables, [{ family: 'ip', name: 'calico' }]);
  now = 59_000;
  t.same((await every()).tables, [{ family: 'ip', name: 'calico' }], 'within the minute: the same answer');
  t.equal(calls, 1, 'nft ran once');
  now = 61_000;
  t.match(await every(), { errors: [{ source: 'nft' }] }, 'after it: asked again');
  t.same(await every(), { tables: [], errors: [] }, 'an error is not kept: asked again at once');
  t.equal(calls, 3);
});
