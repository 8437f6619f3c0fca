// What nft shows of a table iptables-nft-save could not list whole (agent/nft-base-chains.ts):
// the real listing next to the real save of one namespace (test/fixtures/make-fixtures.sh), and
// listings written the way nft 1.0.6 writes them, with what a reader must not count.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { IptablesSaveParser, parseIptablesSave } from '../../agent/iptables-save.js';
import { NftTableListingParser, parseNftTableListing, withNftBaseChains } from '../../agent/nft-base-chains.js';
import { IptablesTable, LIMITS } from '../../protocol/report.js';
import { IPTABLES_FIXTURES } from '../support/fixtures.js';

const read = (f: string) => readFileSync(path.join(IPTABLES_FIXTURES, f), 'utf8');

t.test('the namespace of the fixture: filter holds myinput only, and INPUT, FORWARD, OUTPUT do not exist', async (t) => {
  const listing = parseNftTableListing(read('bad/nft-base-chain-filter.nft-list.txt'));
  t.same(listing, { chains: [{ name: 'myinput', type: 'filter', hook: 'input', priority: 5, policy: 'accept', ruleCount: 1 }], omitted: 0 });
  const parser = new IptablesSaveParser();
  parser.push(read('bad/nft-base-chain-filter.txt'));
  const filter = parser.end().tables.find((x) => x.name === 'filter')!;
  t.same(filter.builtinChains.map((c) => c.name), ['INPUT', 'FORWARD', 'OUTPUT'], 'what iptables-nft-save declared');
  const table = withNftBaseChains(filter, parser.unlisted.get('filter')!, listing);
  t.equal(table.complete, false);
  t.same(table.builtinChains, [], 'the chains that do not exist are not reported');
  t.same(table.nftBaseChains, listing.chains);
  t.equal(
    table.problem,
    'iptables-nft-save leaves out base chains of this table; nft shows myinput (filter hook input priority 5, 1 rule); INPUT, FORWARD, OUTPUT, which iptables-nft-save printed, do not exist',
  );
  t.ok(IptablesTable.safeParse(table).success, 'fits the protocol');
});

t.test('iptables-nft\'s own chains beside another program\'s: both shown, the real built-ins kept', async (t) => {
  const listing = parseNftTableListing(
    [
      'table ip filter {',
      '\tset blocked {',
      '\t\ttype ipv4_addr',
      '\t\telements = { 10.0.0.1, 10.0.0.2,',
      '\t\t\t     10.0.0.3 }',
      '\t}',
      '',
      '\tchain INPUT {',
      '\t\ttype filter hook input priority 0; policy accept;',
      '\t\t counter packets 0 bytes 0 jump cali-INPUT',
      '\t\tcounter packets 0 bytes 0 jump KUBE-FIREWALL',
      '\t}',
      '',
      '\tchain cali-INPUT {',
      '\t\tcounter packets 0 bytes 0 accept',
      '\t}',
      '',
      '\tchain guard {',
      '\t\tcomment "type filter hook output priority 1; a comment, not a chain {"',
      '\t\ttype filter hook input priority -5; policy drop;',
      '\t\ttcp dport 22 accept comment "chain x {"',
      '\t\tip saddr @blocked drop',
      '\t\tct state established accept',
      '\t}',
      '',
      '\tchain reroute {',
      '\t\ttype route hook output priority -150; policy accept;',
      '\t}',
      '}',
      '',
    ].join('\n'),
  );
  t.same(listing.chains, [
    { name: 'INPUT', type: 'filter', hook: 'input', priority: 0, policy: 'accept', ruleCount: 2 },
    { name: 'guard', type: 'filter', hook: 'input', priority: -5, policy: 'drop', ruleCount: 3 },
    { name: 'reroute', type: 'route', hook: 'output', priority: -150, policy: 'accept', ruleCount: 0 },
  ], 'regular chains, sets and comments are not base chains or rules');
  const saved = parseIptablesSave(
    "# Table `filter' contains incompatible base-chains, use 'nft' tool to list them.\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:cali-INPUT - [0:0]\n-A INPUT -j cali-INPUT\nCOMMIT\n",
  ).tables[0]!;
  const table = withNftBaseChains(saved, 'tainted', listing);
  t.same(table.builtinChains.map((c) => [c.name, c.rules.map((r) => r.target)]), [['INPUT', ['cali-INPUT']]], 'INPUT exists and keeps its rules');
  t.match(table.problem, /nft shows guard \(filter hook input priority -5, 3 rules\), reroute \(route hook output priority -150, 0 rules\); FORWARD, OUTPUT, which/);
  t.equal(table.complete, false);
});

t.test('chunks split anywhere read the same; past the limit, chains are counted, not listed', async (t) => {
  const chains = Array.from({ length: LIMITS.nftBaseChainsPerTable + 3 }, (_, i) => `\tchain c${i} {\n\t\ttype filter hook forward priority ${i}; policy accept;\n\t\taccept\n\t}\n`);
  const text = `table ip6 filter {\n${chains.join('\n')}\tchain odd {\n\t\ttype filter hook ingress device "eth0" priority 0; policy accept;\n\t}\n}\n`;
  const whole = parseNftTableListing(text);
  t.equal(whole.chains.length, LIMITS.nftBaseChainsPerTable);
  t.equal(whole.omitted, 4, 'three past the limit and one with a hook the protocol does not carry');
  for (const size of [1, 7, 64]) {
    const parser = new NftTableListingParser();
    for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
    t.same(parser.end(), whole, `in chunks of ${size}`);
  }
  const saved = parseIptablesSave("# Table `filter' contains incompatible base-chains, use 'nft' tool to list them.\n").tables[0]!;
  const problem = withNftBaseChains(saved, 'tainted', whole).problem!;
  t.ok(problem.length <= LIMITS.message, `within the message limit (${problem.length})`);
  const named = problem.match(/c\d+ \(filter hook forward/g)?.length ?? 0;
  t.ok(named > 0, `names what fits (${named})`);
  t.equal(Number(/ and (\d+) more$/.exec(problem)?.[1]), LIMITS.nftBaseChainsPerTable + 4 - named, 'and counts the rest, none lost');
});

t.test('nft cannot be asked: the table stays incomplete and says both', async (t) => {
  const saved = parseIptablesSave(read('bad/nft-base-chain-filter.txt')).tables.find((x) => x.name === 'filter')!;
  const table = withNftBaseChains(saved, 'tainted', { error: 'nft: command not found' });
  t.equal(table.complete, false);
  t.match(table.problem, /^iptables-nft-save leaves out base chains of this table; nft could not list them either: nft: command not found$/);
  t.notOk('nftBaseChains' in table);
});

t.test('a table iptables-nft-save cannot read at all: nft\'s base chains are attached to it', async (t) => {
  const saved = parseIptablesSave(read('bad/nft-incompatible-filter.txt')).tables.find((x) => x.name === 'filter')!;
  const listing = parseNftTableListing('table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state established,related accept\n\t}\n}\n');
  const table = withNftBaseChains(saved, 'incompatible', listing);
  t.match(table, { complete: false, builtinChains: [], nftBaseChains: [{ name: 'INPUT', ruleCount: 1 }] });
  t.match(table.problem, /^iptables-nft-save cannot read this table .*; nft shows INPUT \(filter hook input priority 0, 1 rule\)$/);
  t.ok(IptablesTable.safeParse(table).success, 'fits the protocol');
});
