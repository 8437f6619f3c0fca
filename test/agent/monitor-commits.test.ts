// What xtables-monitor prints, read into commits (agent/monitor-commits.ts). The fixture is its
// real output for a session of iptables-nft, iptables-nft-restore, ip6tables-nft and nft commits
// (test/fixtures/monitor/capture.sh made it).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { CommitReader, parseMonitorLine, type Commit } from '../../agent/monitor-commits.js';
import { FIXTURES } from '../support/fixtures.js';

const session = readFileSync(path.join(FIXTURES, 'monitor/xtables-monitor-e.txt'), 'utf8').split('\n').filter(Boolean);

function read(lines: string[]): { commits: Commit[]; skipped: { from: number; to: number }[] } {
  const reader = new CommitReader();
  const commits: Commit[] = [];
  const skipped: { from: number; to: number }[] = [];
  for (const line of lines) {
    const out = reader.push(line);
    if (out.commit) commits.push(out.commit);
    if (out.skipped) skipped.push(out.skipped);
  }
  return { commits, skipped };
}

t.test('a real session: one commit per generation, each with its writer and the rules it added to built-in chains', async (t) => {
  const { commits, skipped } = read(session);
  t.same(commits.map((c) => c.generation), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
  t.same(skipped, [], 'no generation missed');
  t.same(commits.map((c) => c.writer), [
    'iptables-nft', 'iptables-nft', 'iptables-nft', 'iptables-nft-re', 'iptables-nft-re', 'ip6tables-nft', 'nft', 'nft', 'nft', 'nft', 'nft', 'nft', 'iptables-nft',
  ], "the kernel's comm, iptables-nft-restore cut at 15 characters");
  const added = (generation: number) => commits.find((c) => c.generation === generation)!.added;
  t.same(added(2), [], 'a user chain declared adds no rule');
  t.same(added(3), [{ family: 'ipv4', table: 'filter', chain: 'INPUT', target: 'cali-INPUT' }], "Felix's hook, its comment skipped");
  t.same(added(5), [{ family: 'ipv4', table: 'filter', chain: 'INPUT', target: 'illumio-INPUT' }], 'inserted at the top, printed as -A');
  t.same(added(6), [{ family: 'ipv4', table: 'filter', chain: 'INPUT', target: 'cali-INPUT' }], 'deleted and inserted again: the insert counts');
  t.same(added(7), [{ family: 'ipv6', table: 'filter', chain: 'FORWARD', target: 'ACCEPT' }], 'a quoted comment holding " -j FAKE" is not the target');
  t.same(added(11), [], 'a rule of an inet table: xtables-monitor prints nothing of it');
  t.same(added(12), [{ family: 'ipv4', table: 'filter', chain: 'INPUT', target: 'ACCEPT' }], 'a native nft rule iptables can read');
  t.same(commits.filter((c) => c.watchedTable).map((c) => c.generation), [8, 13], 'table ip calico came and went; ip filter, ip nat and inet t1 are not watched');
});

t.test('a gap in the generations is commits unseen', async (t) => {
  const { commits, skipped } = read(['NEWGEN: GENID=7 PID=1 NAME=a', ' EVENT: -4 -t filter -A INPUT -j X', 'NEWGEN: GENID=10 PID=2 NAME=b', 'NEWGEN: GENID=11 PID=3 NAME=c']);
  t.same(skipped, [{ from: 8, to: 9 }]);
  t.same(commits.map((c) => c.generation), [7, 10, 11], 'the commit after the gap still counts');
  // The counter is 32 bits wide (nf_tables_api.c, net->nft.base_seq) and wraps.
  t.same(read(['NEWGEN: GENID=4294967295 PID=1 NAME=a', 'NEWGEN: GENID=0 PID=1 NAME=a']).skipped, [], 'wrapping is no gap');
  t.same(read(['NEWGEN: GENID=5 PID=1 NAME=a', 'NEWGEN: GENID=5 PID=1 NAME=a']).skipped, [{ from: 6, to: 4 }], 'a repeated number is not the next one either');
});

t.test('lines', async (t) => {
  t.same(parseMonitorLine('NEWGEN: GENID=12 PID=4711 NAME=felix worker'), { kind: 'generation', generation: 12, pid: 4711, writer: 'felix worker' }, 'a comm may hold spaces');
  t.same(parseMonitorLine(' EVENT: NEWGEN: GENID=3 PID=9 NAME=nft'), { kind: 'generation', generation: 3, pid: 9, writer: 'nft' }, 'after an unfinished EVENT');
  t.same(parseMonitorLine(' EVENT: -6 -t mangle -D PREROUTING -j cali-PREROUTING'), { kind: 'rule', op: 'delete', family: 'ipv6', table: 'mangle', chain: 'PREROUTING', target: 'cali-PREROUTING' });
  t.same(parseMonitorLine(' EVENT: -0 -t filter -A INPUT -j ACCEPT'), { kind: 'other' }, 'arp is not iptables');
  t.same(parseMonitorLine(' EVENT: -4 -t filter -A INPUT -m comment --comment "cut short'), { kind: 'rule', op: 'add', family: 'ipv4', table: 'filter', chain: 'INPUT', target: '' }, 'an open quote: no target');
  t.same(parseMonitorLine(' EVENT: nft: DEL table: table kube-proxy ip6 flags 0 use 0 handle 9'), { kind: 'table', op: 'delete', name: 'kube-proxy', family: 'ip6' });
});

t.test('a full restore adds thousands of rules; a commit keeps a bounded few', async (t) => {
  const lines = Array.from({ length: 5000 }, (_, i) => ` EVENT: -4 -t filter -A FORWARD -j KUBE-SVC-${i}`);
  const { commits } = read([...lines, 'NEWGEN: GENID=2 PID=1 NAME=iptables-nft-re']);
  t.equal(commits[0]!.added.length, 64);
});
