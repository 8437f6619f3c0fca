import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { HeadWatch, HeadWriters, headOwners } from '../../agent/head-watch.js';
import type { Commit } from '../../agent/monitor-commits.js';
import { parseIptablesSave } from '../../agent/iptables-save.js';
import { factsOf } from '../../agent/run.js';
import type { IptablesRuleset, NodeReport } from '../../protocol/report.js';
import { IPTABLES_FIXTURES } from '../support/fixtures.js';

const ruleset = (file: string): IptablesRuleset => ({ family: 'ipv4', backend: 'nft', source: 'host', ...parseIptablesSave(readFileSync(path.join(IPTABLES_FIXTURES, file), 'utf8')) });
const reportOf = (file: string) => ({ iptables: [ruleset(file)] }) as NodeReport;

t.test('head owners: only chains Calico hooks', async (t) => {
  const owners = headOwners([ruleset('foreign-first-insert.v4.nft.txt')]);
  t.equal(owners.get('ipv4/nft/filter/INPUT'), 'acme-INPUT');
  t.equal(owners.get('ipv4/nft/raw/PREROUTING'), 'cali-PREROUTING');
  t.notOk(owners.has('ipv4/nft/mangle/INPUT'), 'mangle INPUT has no Calico hook');
  t.notOk(headOwners([ruleset('leftover-cali.v4.nft.txt')]).size, 'leftover chains hook nothing');
});

t.test('a flip between Calico and another product is a head change; steady heads are not', async (t) => {
  const watch = new HeadWatch(60_000);
  t.same(watch.observe(reportOf('calico-insert.v4.nft.txt'), 0), []);
  t.same(watch.observe(reportOf('calico-insert.v4.nft.txt'), 1_000), [], 'same head, no change');
  const flipped = watch.observe(reportOf('foreign-first-insert.v4.nft.txt'), 2_000);
  const input = flipped.find((c) => c.table === 'filter' && c.chain === 'INPUT');
  t.same(input, { family: 'ipv4', backend: 'nft', table: 'filter', chain: 'INPUT', from: 'cali-INPUT', to: 'acme-INPUT', at: new Date(2_000).toISOString() });
  t.equal(watch.observe(reportOf('foreign-first-insert.v4.nft.txt'), 3_000).length, flipped.length, 'kept within the window');
  t.same(watch.observe(reportOf('foreign-first-insert.v4.nft.txt'), 62_001), [], 'forgotten after the window');
});

t.test('facts without the timestamp decide whether a report is new', async (t) => {
  const a = { collectedAt: '2026-01-01T00:00:00.000Z', node: { name: 'n' } } as NodeReport;
  const b = { collectedAt: '2026-01-01T00:00:15.000Z', node: { name: 'n' } } as NodeReport;
  t.equal(factsOf(a), factsOf(b));
  t.not(factsOf(a), factsOf({ ...b, node: { name: 'm' } }));
});

t.test('a head change names the process that added the new head, where the listener saw it', async (t) => {
  const writers = new HeadWriters();
  const commit = (writer: string, target: string, chain = 'INPUT'): Commit => ({ generation: 1, pid: 1, writer, added: [{ family: 'ipv4', table: 'filter', chain, target }], watchedTable: false });
  writers.record(commit('iptables-nft-re', 'cali-INPUT'));
  writers.record(commit('acme-agent', 'acme-INPUT'));
  const watch = new HeadWatch(60_000);
  watch.observe(reportOf('calico-insert.v4.nft.txt'), 0, writers.writerOf);
  const flipped = watch.observe(reportOf('foreign-first-insert.v4.nft.txt'), 1_000, writers.writerOf);
  t.equal(flipped.find((c) => c.chain === 'INPUT' && c.table === 'filter')?.by, 'acme-agent');
  t.notOk(flipped.find((c) => c.chain === 'FORWARD')?.by, 'no commit seen for that head: no name');
  const back = watch.observe(reportOf('calico-insert.v4.nft.txt'), 2_000, writers.writerOf);
  t.equal(back.filter((c) => c.chain === 'INPUT' && c.table === 'filter').at(-1)?.by, 'iptables-nft-re');

  const ref = { family: 'ipv4' as const, backend: 'nft' as const, table: 'filter', chain: 'INPUT' };
  writers.record(commit('felix-again', 'cali-INPUT'));
  t.equal(writers.writerOf(ref, 'cali-INPUT'), 'felix-again', 'the latest writer of a rule');
  t.equal(writers.writerOf({ ...ref, backend: 'legacy' }, 'cali-INPUT'), undefined, 'the legacy backend tells nobody');
  for (let i = 0; i < 16; i++) writers.record(commit('kube-proxy', `KUBE-${i}`));
  t.equal(writers.writerOf(ref, 'acme-INPUT'), undefined, 'sixteen newer targets in the chain: the oldest forgotten');
  t.equal(writers.writerOf(ref, 'KUBE-15'), 'kube-proxy');
  writers.record(commit('a\u0007comm-longer-than-the-kernel-allows', 'X'));
  t.equal(writers.writerOf(ref, 'X'), 'a\ufffdcomm-longer-th', 'printable, and at most 16 characters');
});
