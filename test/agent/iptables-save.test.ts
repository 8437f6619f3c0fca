import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseIptablesSave, keepHeadAndTail } from '../../agent/iptables-save.js';
import { IptablesTable, rulePositions } from '../../protocol/report.js';
import { IPTABLES_FIXTURES, builtinTargetsOf, expected, realDumps } from '../support/fixtures.js';

const read = (f: string) => readFileSync(path.join(IPTABLES_FIXTURES, f), 'utf8');

t.test('real dumps: every built-in chain in the order iptables-restore loaded it', async (t) => {
  const dumps = realDumps();
  t.ok(dumps.length >= 8, 'the fixture set is there');
  for (const d of dumps) {
    const parsed = parseIptablesSave(d.dump);
    t.equal(parsed.verdict, 'ok', `${d.name}: verdict`);
    const loaded = builtinTargetsOf(d.rules);
    const seen = new Map<string, string[]>();
    for (const table of parsed.tables) {
      t.ok(table.complete, `${d.name}: ${table.name} complete`);
      t.ok(IptablesTable.safeParse(table).success, `${d.name}: ${table.name} fits the protocol`);
      for (const chain of table.builtinChains) seen.set(`${table.name}/${chain.name}`, chain.rules.map((r) => r.target));
    }
    // iptables-save lists every built-in chain of a loaded table, rules or not.
    for (const [chain, targets] of loaded) t.same(seen.get(chain), targets, `${d.name}: ${chain}`);
  }
});

t.test("Calico's hooks keep their comment and target", async (t) => {
  const parsed = parseIptablesSave(read('calico-insert.v4.nft.txt'));
  const filter = parsed.tables.find((x) => x.name === 'filter')!;
  const input = filter.builtinChains.find((c) => c.name === 'INPUT')!;
  t.same(input.rules[0], { target: 'cali-INPUT', comment: 'cali:Cz_u1IQiXIMmKD4c' });
  t.equal(input.policy, 'ACCEPT');
});

t.test('user chains: high-cardinality families counted, the rest named', async (t) => {
  const parsed = parseIptablesSave(read('calico-kube-docker.v4.nft.txt'));
  const nat = parsed.tables.find((x) => x.name === 'nat')!;
  t.equal(nat.userChains.families['KUBE-SVC-'], 200);
  t.equal(nat.userChains.families['KUBE-SEP-'], 600);
  t.ok(nat.userChains.names.includes('KUBE-SERVICES'));
  t.ok(nat.userChains.names.includes('cali-PREROUTING'));
  t.notOk(nat.userChains.names.some((n) => n.startsWith('KUBE-SEP-')), 'family members are not listed');
  t.equal(parsed.ruleCount, (read('calico-kube-docker.v4.nft.txt').match(/^-A /gm) ?? []).length);
});

t.test('damaged and foreign text: the verdict written in expected.json', async (t) => {
  for (const [file, want] of Object.entries(expected.iptables)) {
    const parsed = parseIptablesSave(read(file));
    t.equal(parsed.verdict, want.verdict, `${file}: verdict`);
    if (want.verdict !== 'ok') t.match(parsed.message, /\S/, `${file}: says why`);
    if (want.incompleteTables) {
      t.same(parsed.tables.filter((x) => !x.complete).map((x) => x.name), want.incompleteTables, `${file}: incomplete tables`);
      for (const table of parsed.tables.filter((x) => !x.complete)) t.match(table.problem, /\S/, `${file}: ${table.name} says why`);
    }
  }
});

t.test('a table iptables-nft-save cannot read is reported, unreadable and empty, beside the whole ones', async (t) => {
  // make-fixtures.sh: calico-insert.v4.nft loaded, then one rule added with nft to filter INPUT.
  const parsed = parseIptablesSave(read('bad/nft-incompatible-filter.txt'));
  const loaded = parseIptablesSave(read('calico-insert.v4.nft.txt'));
  t.equal(parsed.verdict, 'incomplete');
  t.match(parsed.message, /incomplete: filter/);
  const filter = parsed.tables.find((x) => x.name === 'filter');
  t.match(filter, { complete: false, builtinChains: [], problem: /iptables-nft-save cannot read this table .*incompatible, use 'nft' tool.*written with nft/ });
  t.ok(IptablesTable.safeParse(filter).success, 'fits the protocol');
  for (const name of ['mangle', 'raw', 'nat']) {
    t.same(parsed.tables.find((x) => x.name === name), loaded.tables.find((x) => x.name === name), `${name}: whole, as loaded`);
  }
});

t.test('CRLF line ends parse exactly like LF', async (t) => {
  t.same(parseIptablesSave(read('bad/crlf.txt')), parseIptablesSave(read('calico-insert.v4.nft.txt')));
});

t.test('`iptables -S` output is rejected with the command to use instead', async (t) => {
  const parsed = parseIptablesSave(read('bad/iptables-S.txt'));
  t.equal(parsed.verdict, 'unsupported');
  t.match(parsed.message, /iptables -S/);
  t.match(parsed.message, /iptables-save/);
  t.same(parsed.tables, []);
});

t.test('quoted comments: spaces, " -j " and escaped quotes stay inside the comment', async (t) => {
  const parsed = parseIptablesSave(
    [
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':X - [0:0]',
      '-A INPUT -m comment --comment "allow -j DROP \\"quoted\\"" -j X',
      '-A INPUT -m comment --comment first -m comment --comment second -g X',
      '-A INPUT -p tcp',
      'COMMIT',
      '',
    ].join('\n'),
  );
  t.equal(parsed.verdict, 'ok');
  t.same(parsed.tables[0]!.builtinChains[0]!.rules, [
    { target: 'X', comment: 'allow -j DROP "quoted"' },
    { target: 'X', comment: 'first' },
    { target: '' },
  ]);
});

t.test('a rule for an undeclared chain makes the table incomplete', async (t) => {
  const parsed = parseIptablesSave('*filter\n:INPUT ACCEPT [0:0]\n-A INPUX -j DROP\nCOMMIT\n');
  t.equal(parsed.verdict, 'incomplete');
  t.match(parsed.tables[0]!.problem, /INPUX/);
});

t.test('a long built-in chain keeps its head and its tail, with true positions', async (t) => {
  const rules = Array.from({ length: 100 }, (_, i) => `-A INPUT -j R${i}`);
  const text = ['*filter', ':INPUT ACCEPT [0:0]', ...Array.from({ length: 100 }, (_, i) => `:R${i} - [0:0]`), ...rules, 'COMMIT', ''].join('\n');
  const chain = parseIptablesSave(text).tables[0]!.builtinChains[0]!;
  t.equal(chain.ruleCount, 100);
  t.equal(chain.rules.length, 64);
  t.equal(chain.rules[0]!.target, 'R0');
  t.equal(chain.rules[63]!.target, 'R99');
  const positions = rulePositions(chain);
  t.equal(positions[31], 32);
  t.equal(positions[32], 69);
  t.equal(positions[63], 100);
  const again = keepHeadAndTail(chain, 8);
  t.same(again.rules.map((r) => r.target), ['R0', 'R1', 'R2', 'R3', 'R96', 'R97', 'R98', 'R99']);
  t.same(rulePositions(again), [1, 2, 3, 4, 97, 98, 99, 100]);
});
