// The listener (agent/xtables-monitor.ts) with the real xtables-monitor, in network namespaces
// the test creates: it listens before it says so, reports each commit with its writer, restarts
// after a failure with backoff, takes an overflow for "read everything", and writes nothing.
import { setTimeout as delay } from 'node:timers/promises';
import t, { type Test } from 'tap';
import type { Commit } from '../../agent/monitor-commits.js';
import { MONITOR_COMMAND, XtablesMonitor, nftablesListeners, type MonitorOptions } from '../../agent/xtables-monitor.js';
import { createNetns, netnsUnavailable, type Netns } from '../support/netns.js';
import { alive, until } from '../support/waiting.js';

/** A monitor inside `ns` (`ip netns exec` execs it: the pid is xtables-monitor's), and what it told. */
function monitorIn(t: Test, ns: Netns, opts: Partial<MonitorOptions> = {}) {
  const told = { commits: [] as Commit[], missed: [] as string[], listening: 0, failed: [] as string[] };
  const monitor = new XtablesMonitor(
    {
      commit: (c) => told.commits.push(c),
      missed: (reason) => told.missed.push(reason),
      listening: () => told.listening++,
      failed: (message) => told.failed.push(message),
    },
    { command: ['ip', 'netns', 'exec', ns.name, ...MONITOR_COMMAND], overflowHoldMs: 60_000, backoffBaseMs: 100, ...opts },
  );
  t.teardown(() => monitor.stop());
  return { monitor, told };
}



/** A fresh namespace and a monitor listening in it. */
async function listeningIn(t: Test) {
  const ns = createNetns();
  t.teardown(() => ns.remove());
  const { monitor, told } = monitorIn(t, ns);
  monitor.start();
  t.ok(await monitor.ensureListening(5_000), 'listening');
  return { ns, monitor, told };
}

/** An iptables-restore input that adds `n` rules to one chain in one commit. */
const bigCommit = (chain: string, n: number) => ['*filter', `:${chain} - [0:0]`, ...Array.from({ length: n }, (_, i) => `-A ${chain} -s 10.${i >> 8}.${i & 255}.1/32 -j ACCEPT`), 'COMMIT', ''].join('\n');

t.test('/proc/net/netlink: the sockets in the nftables group', async (t) => {
  const text = [
    'sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode',
    '0000000088072fd6 0   0          00000000 0        0        0     2        0        110596',
    '00000000dd1c6723 12  23482      00000000 0        0        0     2        0        110737',
    '00000000496cad31 12  2569992695 00000040 0        0        0     2        0        110738',
    '00000000bfc33c92 12  23486      00000140 0        0        0     2        0        109925',
    '00000000aaaaaaaa 0   77         00000040 0        0        0     2        0        109999',
  ].join('\n');
  t.same(nftablesListeners(text), ['110738', '109925'], 'netfilter (12) with group 7 (bit 0x40), alone or with others; not route (0)');
});

const why = netnsUnavailable();
if (why) {
  t.plan(1, `namespace tests skipped: ${why}`);
} else {
  t.test('listening before it says so: a commit right after is never missed, and comes with its writer', async (t) => {
    const ns = createNetns();
    t.teardown(() => ns.remove());
    for (let round = 0; round < 5; round++) {
      const { monitor, told } = monitorIn(t, ns);
      monitor.start();
      t.ok(await monitor.ensureListening(5_000), `round ${round}: listening`);
      ns.exec('iptables-nft', ['-A', 'INPUT', '-j', 'ACCEPT']);
      await until('the commit', () => told.commits.length > 0);
      t.match(told.commits[0], { writer: 'iptables-nft', added: [{ family: 'ipv4', table: 'filter', chain: 'INPUT', target: 'ACCEPT' }] });
      await monitor.stop();
    }
  });

  t.test('killed: a failure, restarted after a backoff, listening again', async (t) => {
    const { ns, monitor, told } = await listeningIn(t);
    const first = monitor.pid!;
    process.kill(first, 'SIGKILL');
    await until('the failure', () => told.failed.length === 1);
    t.match(told.failed[0], /SIGKILL/);
    t.same(told.missed, ['monitor ended'], 'what happened meanwhile is unknown');
    t.notOk(monitor.listening);
    await until('listening again', () => monitor.listening);
    t.not(monitor.pid, first, 'a new process');
    t.equal(told.listening, 2);
    ns.exec('nft', ['add', 'table', 'ip', 'calico']);
    await until('a commit after the restart', () => told.commits.length > 0);
    t.match(told.commits[0], { writer: 'nft', watchedTable: true });
  });

  t.test('an overflow is not a failure: everything is read again, and the monitor restarts at once, or at the next read if it overflowed just before', async (t) => {
    const { ns, monitor, told } = await listeningIn(t);
    // Thousands of notifications in one commit: more than the socket's default buffer holds.
    ns.exec('iptables-nft-restore', ['--noflush'], bigCommit('BIG1', 5_000));
    await until('the overflow', () => told.missed.includes('overflow'));
    await until('listening again at once', () => monitor.listening);
    t.equal(told.listening, 2);
    ns.exec('iptables-nft-restore', ['--noflush'], bigCommit('BIG2', 5_000));
    await until('the second overflow', () => told.missed.filter((m) => m === 'overflow').length === 2);
    await delay(500);
    t.notOk(monitor.listening, 'held: the next read restarts it');
    t.equal(monitor.pid, undefined);
    t.ok(await monitor.ensureListening(5_000), 'restarted by the read');
    t.same(told.failed, [], 'no failure counted');
  });

  t.test('a command that is not there: a failure each time it is tried, with growing waits', async (t) => {
    const ns = createNetns();
    t.teardown(() => ns.remove());
    const { monitor, told } = monitorIn(t, ns, { command: ['nodeprep-no-such-monitor'], backoffBaseMs: 200 });
    monitor.start();
    t.notOk(await monitor.ensureListening(1_000));
    await until('three failures', () => told.failed.length >= 3);
    t.match(told.failed[0], /nodeprep-no-such-monitor: command not found/);
    t.equal(told.listening, 0);
  });

  t.test('stop() ends the child; it never writes: an empty namespace stays empty', async (t) => {
    const { ns, monitor } = await listeningIn(t);
    const pid = monitor.pid!;
    t.equal(ns.exec('nft', ['list', 'ruleset']), '', 'no nftables table created');
    t.equal(ns.exec('cat', ['/proc/net/ip_tables_names']), '', 'no legacy table created');
    await monitor.stop();
    t.notOk(alive(pid), 'the child is gone');
    t.notOk(monitor.listening);
  });
}
