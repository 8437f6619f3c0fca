// When the agent reads what (agent/read-schedule.ts): pure, on a clock the test moves.
import t from 'tap';
import { ReadSchedule, type Reads } from '../../agent/read-schedule.js';

const SAMPLE = 15_000;
const make = () => new ReadSchedule({ sampleMs: SAMPLE, fullReadMs: 1_800_000, settleMs: 100, tablesMs: 60_000 });
const none: Reads = { host: false, nft: false, legacy: false, nftTables: false };
const everything: Reads = { host: true, nft: true, legacy: true, nftTables: true };
const tick: Reads = { host: true, nft: false, legacy: true, nftTables: false };

/** Runs the schedule from `from` to `to` as run.ts does: read what is due, sleep until nextAt. */
function drive(s: ReadSchedule, from: number, to: number, listening: boolean, events: Map<number, () => void> = new Map()): { at: number; reads: Reads }[] {
  const done: { at: number; reads: Reads }[] = [];
  const pending = [...events.keys()].sort((a, b) => a - b);
  for (let now = from; now <= to; ) {
    while (pending.length && pending[0]! <= now) events.get(pending.shift()!)!();
    const reads = s.due(now, listening);
    if (reads.host || reads.nft || reads.legacy || reads.nftTables) {
      done.push({ at: now, reads });
      s.read(reads, now);
    }
    now = Math.min(Math.max(s.nextAt(listening), now + 1), pending[0] ?? Infinity);
  }
  return done;
}

t.test('the first read is everything; then, listening and nothing changing, only the host files and the legacy backend', async (t) => {
  const s = make();
  const reads = drive(s, 0, 60_000, true);
  t.same(reads[0], { at: 0, reads: everything });
  t.same(reads.slice(1).map((r) => r.reads), [tick, tick, tick, tick], 'every sample: no nftables read');
  t.same(reads.map((r) => r.at), [0, 15_000, 30_000, 45_000, 60_000]);
});

t.test('a commit is read soon after, not at the next sample', async (t) => {
  const s = make();
  drive(s, 0, 15_000, true);
  s.changed(20_000);
  t.same(s.due(20_050, true), none, 'the burst may go on for a moment');
  t.equal(s.nextAt(true), 20_100);
  t.same(s.due(20_100, true), { host: false, nft: true, legacy: false, nftTables: false });
});

t.test('under churn: at most one nftables read per sample interval, however many commits', async (t) => {
  const s = make();
  const commits = new Map<number, () => void>();
  for (let at = 1_000; at <= 61_000; at += 1_000) commits.set(at, () => s.changed(at));
  const nft = drive(s, 0, 100_000, true, commits).filter((r) => r.reads.nft);
  t.same(nft.map((r) => r.at), [0, 15_000, 30_000, 45_000, 60_000, 75_000], '61 commits, 6 reads: the last one (61 s) read too, and nothing after');
});

t.test('a change and its revert within one window: read once, after both', async (t) => {
  const s = make();
  drive(s, 0, 0, true);
  s.changed(1_000); // a rule inserted...
  s.changed(1_050); // ...and deleted again
  const reads = drive(s, 1_050, 16_000, true).filter((r) => r.reads.nft);
  t.same(reads.map((r) => r.at), [15_000], 'one read, after the revert: it sees the final state');
});

t.test('a commit seen while a read runs is read again: the read may have missed it', async (t) => {
  const s = make();
  t.same(s.due(0, true), everything);
  s.changed(300); // the read started at 0 and takes a while
  s.read(everything, 0);
  t.equal(s.nextAt(true), 15_000, 'read again, within the throttle');
  t.same(s.due(15_000, true).nft, true);
  // A commit seen before the read started is in what it read.
  const u = make();
  u.changed(0);
  u.read(everything, 10);
  t.equal(u.nextAt(true), 15_010, 'nothing left over: the next host sample');
  t.same(u.due(15_010, true), tick);
});

t.test('without a listener (or with it down): the nftables rulesets every sample, the tables every minute', async (t) => {
  const s = make();
  const reads = drive(s, 0, 75_000, false);
  t.same(reads.map((r) => r.reads.nft), [true, true, true, true, true, true]);
  t.same(reads.filter((r) => r.reads.nftTables).map((r) => r.at), [0, 60_000]);
});

t.test('the safety net: everything again after the full-read interval, changed or not', async (t) => {
  const s = new ReadSchedule({ sampleMs: SAMPLE, fullReadMs: 120_000, settleMs: 100, tablesMs: 60_000 });
  const full = drive(s, 0, 250_000, true).filter((r) => r.reads.nft);
  t.same(full.map((r) => r.at), [0, 120_000, 240_000]);
  t.ok(full.every((r) => r.reads.nftTables && r.reads.host && r.reads.legacy));
});

t.test('the nftables tables: when the listener saw one come or go; after commits went unseen, within a minute', async (t) => {
  const s = make();
  drive(s, 0, 0, true);
  s.changed(5_000);
  t.equal(s.due(15_000, true).nftTables, false, 'a commit that touched no watched table');
  s.read(s.due(15_000, true), 15_000);
  s.changed(20_000, true);
  t.same(s.due(30_000, true), { host: true, nft: true, legacy: true, nftTables: true }, 'table ip calico came: ask');
  s.read(s.due(30_000, true), 30_000);
  s.missed(31_000); // an overflow: a table may have come and gone unseen
  t.same(s.due(45_000, true).nftTables, false, 'asked 15 s ago: not yet');
  t.equal(s.nextAt(true), 45_000);
  s.read(s.due(45_000, true), 45_000);
  t.equal(s.nextAt(true), 60_000, 'the next sample');
  s.read(s.due(60_000, true), 60_000);
  t.equal(s.nextAt(true), 75_000);
  t.same(s.due(90_000, true).nftTables, true, 'a minute after the last time it asked');
  s.read({ ...tick, nftTables: true }, 90_000, true);
  t.same(s.due(90_001, false).nftTables, false, 'failed: asked again at the next sample');
  t.same(s.due(105_000, false).nftTables, true);
});
