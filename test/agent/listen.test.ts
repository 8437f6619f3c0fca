// The agent listens, then reads (agent/xtables-monitor.ts, agent/read-schedule.ts): real agents
// in network namespaces with the real iptables, nft and xtables-monitor, reporting to a real
// aggregator (test/support/cluster.ts). Changes made with iptables-nft and with nft reach the
// aggregator with no periodic read; a change and its revert within one window are read once, in
// their final state; the monitor killed under the agent is restarted; the legacy backend is still
// read; SIGTERM ends the monitor with the agent. Each iptables-nft-save the agent runs is counted
// (a wrapper first on its PATH), and samples are counted by the health file it touches: the
// verdicts rest on counts, and time only bounds the waits.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { NodeDetail } from '../../protocol/api.js';
import type { NodeReport } from '../../protocol/report.js';
import { Cluster, eventually, removeStaleNamespaces, type Proc } from '../support/cluster.js';
import { IPTABLES_FIXTURES } from '../support/fixtures.js';
import { netnsUnavailable } from '../support/netns.js';
import { procStat } from '../support/proc.js';
import { alive } from '../support/waiting.js';

const rules = (name: string) => readFileSync(path.join(IPTABLES_FIXTURES, `${name}.rules`), 'utf8');
const ID = { n1: '1a2b3c4d5e6f40718293a4b5c6d7e8f9', n2: '2b3c4d5e6f708192a3b4c5d6e7f8091a', n3: '3c4d5e6f708192a3b4c5d6e7f8091a2b' };

/** filter INPUT's first rule in the report's ruleset of that backend. */
const headOf = (report: NodeReport | undefined, backend: 'nft' | 'legacy' = 'nft') =>
  report?.iptables.find((s) => s.family === 'ipv4' && s.backend === backend)?.tables.find((x) => x.name === 'filter')?.builtinChains.find((c) => c.name === 'INPUT')?.rules[0]?.target;
const inputLength = (report: NodeReport | undefined) =>
  report?.iptables.find((s) => s.family === 'ipv4' && s.backend === 'nft')?.tables.find((x) => x.name === 'filter')?.builtinChains.find((c) => c.name === 'INPUT')?.ruleCount;

/** The monitor the agent runs: its child named xtables-monitor. */
function monitorOf(agent: Proc): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || procStat(Number(entry))?.ppid !== agent.child.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'xtables-monitor') return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}


async function run(): Promise<void> {
  removeStaleNamespaces();
  const cluster = new Cluster();
  t.teardown(() => cluster.cleanup());
  process.once('exit', () => cluster.cleanup());
  const report = async (node: string) => (await cluster.get<NodeDetail>(`/v1/nodes/${node}`))?.body.report;

  // Per node: an iptables-nft-save that counts its runs, and a health file that counts samples.
  const realSave = execFileSync('sh', ['-c', 'command -v iptables-nft-save'], { encoding: 'utf8' }).trim();
  const watched = (node: string) => {
    const dir = path.join(cluster.dir, 'watch', node);
    mkdirSync(dir, { recursive: true });
    const count = path.join(dir, 'saves');
    writeFileSync(count, '');
    writeFileSync(path.join(dir, 'iptables-nft-save'), `#!/bin/sh\necho >> '${count}'\nexec ${realSave} "$@"\n`);
    chmodSync(path.join(dir, 'iptables-nft-save'), 0o755);
    const health = path.join(dir, 'alive');
    return {
      saves: () => readFileSync(count, 'utf8').length,
      env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
      healthFlags: ['--health-file', health],
      /** Waits until `n` more samples have touched the health file. */
      samples: async (n: number) => {
        let last = '';
        for (let seen = 0; seen < n; ) {
          await eventually('a sample', 15, async () => {
            const now = (() => { try { return readFileSync(health, 'utf8'); } catch { return ''; } })();
            return now !== last && now !== '' ? now : undefined;
          }).then((now) => ((last = now), seen++));
        }
      },
    };
  };

  cluster.addNode('n1', ID.n1);
  cluster.addNode('n2', ID.n2);
  cluster.addNode('n3', ID.n3);
  cluster.exec(cluster.nodeNs('n1'), 'iptables-nft-restore', [], rules('calico-insert.v4.nft'));
  cluster.exec(cluster.nodeNs('n2'), 'iptables-legacy-restore', [], rules('calico-insert.v4.legacy'));
  cluster.exec(cluster.nodeNs('n3'), 'iptables-nft-restore', [], rules('calico-insert.v4.nft'));
  cluster.startAggregator({ LOG_LEVEL: 'warn', CLUSTER_VIEW: 'off' });
  // A long full-read interval and heartbeat: whatever the agents read beyond their first read,
  // they read because the listener told them to, and they send because the facts changed.
  const quiet = ['--full-read-interval', '3600', '--heartbeat-interval', '3600'];
  const w1 = watched('n1');
  const w3 = watched('n3');
  const n1 = cluster.startAgent('n1', ['--sample-interval', '1', ...quiet, ...w1.healthFlags], w1.env);
  const n2 = cluster.startAgent('n2', ['--sample-interval', '1', ...quiet]);
  const n3 = cluster.startAgent('n3', ['--sample-interval', '5', ...quiet], w3.env);
  const n1ns = cluster.nodeNs('n1');

  await t.test('nothing changes: nothing is read; a change with iptables-nft and one with nft reach the aggregator', async (t) => {
    t.equal(await eventually('n1 reports', 20, async () => headOf(await report('n1'))), 'cali-INPUT');
    const before = w1.saves();
    await w1.samples(3);
    t.equal(w1.saves(), before, 'three samples and no commit: iptables-nft-save did not run');

    cluster.exec(n1ns, 'iptables-nft', ['-I', 'INPUT', '1', '-s', '198.51.100.1/32', '-j', 'DROP']);
    t.equal(await eventually('the iptables-nft change', 15, async () => (headOf(await report('n1')) === 'DROP' ? 'DROP' : undefined)), 'DROP');
    const afterFirst = w1.saves();
    t.ok(afterFirst > before, 'read because of the commit');

    cluster.exec(n1ns, 'nft', ['insert', 'rule', 'ip', 'filter', 'INPUT', 'ip', 'saddr', '198.51.100.2', 'counter', 'accept']);
    t.equal(await eventually('the nft change', 15, async () => (headOf(await report('n1')) === 'ACCEPT' ? 'ACCEPT' : undefined)), 'ACCEPT');
    t.ok(w1.saves() > afterFirst, 'read because of the commit');

    cluster.exec(n1ns, 'nft', ['add', 'table', 'ip', 'calico']);
    await eventually('the new nftables table', 15, async () => (await report('n1'))?.nftTables.some((x) => x.family === 'ip' && x.name === 'calico'));
    const head = (await report('n1'))!.headChanges?.find((c) => c.table === 'filter' && c.chain === 'INPUT');
    t.match(head, { from: 'cali-INPUT', to: 'DROP', by: 'iptables-nft' }, 'the writer of the new head, as the kernel names it');
  });

  await t.test('a change and its revert within one window: read once, after both, in the final state', async (t) => {
    const n3ns = cluster.nodeNs('n3');
    const length = inputLength(await eventually('n3 reports', 20, async () => report('n3')))!;
    // A commit the agent reads and reports: its window of 5 s starts with that read.
    cluster.exec(n3ns, 'iptables-nft', ['-N', 'illumio-INPUT']);
    await eventually('the new chain reported', 15, async () =>
      (await report('n3'))?.iptables[0]?.tables.find((x) => x.name === 'filter')?.userChains.names.includes('illumio-INPUT'));
    const windowOpen = Date.now();
    const before = w3.saves();
    // Within the window: another product's rule on top, and gone again; then one rule more at the end.
    cluster.exec(n3ns, 'iptables-nft', ['-I', 'INPUT', '1', '-j', 'illumio-INPUT']);
    cluster.exec(n3ns, 'iptables-nft', ['-D', 'INPUT', '-j', 'illumio-INPUT']);
    cluster.exec(n3ns, 'iptables-nft', ['-A', 'INPUT', '-j', 'ACCEPT']);
    // The commits must fall within the window for this test to say anything; it opened when the
    // read was reported, a little after the read itself.
    t.ok(Date.now() - windowOpen < 3_000, `the commits were done ${Date.now() - windowOpen} ms after the read was reported, within its 5 s window`);
    const final = await eventually('the final state', 20, async () => {
      const r = await report('n3');
      return inputLength(r) === length + 1 ? r : undefined;
    });
    t.equal(headOf(final), 'cali-INPUT', "Calico's hook on top, as it is");
    t.equal(final.headChanges, undefined, 'the rule that came and went was never reported');
    t.equal(w3.saves() - before, 1, 'three commits, one read');
  });

  await t.test('the monitor killed under the agent: restarted, and changes after it still arrive', async (t) => {
    const first = monitorOf(n1);
    t.ok(first, 'the agent runs xtables-monitor');
    process.kill(first!, 'SIGKILL');
    const second = await eventually('a new monitor', 15, async () => {
      const pid = monitorOf(n1);
      return pid !== undefined && pid !== first ? pid : undefined;
    });
    t.ok(alive(second));
    await eventually('listening again', 15, async () => n1.lines.filter((l) => l.includes('listening for ruleset changes')).length === 2);
    t.equal(n1.lines.filter((l) => l.includes('ruleset listener stopped')).length, 1, 'the failure logged once');
    cluster.exec(n1ns, 'iptables-nft', ['-D', 'INPUT', '-s', '198.51.100.1/32', '-j', 'DROP']);
    cluster.exec(n1ns, 'iptables-nft', ['-I', 'INPUT', '1', '-j', 'REJECT']);
    t.equal(await eventually('a change after the restart', 15, async () => (headOf(await report('n1')) === 'REJECT' ? 'REJECT' : undefined)), 'REJECT');
    t.same((await report('n1'))!.errors, [], 'one failure is not an error yet');
  });

  await t.test('the legacy backend, which tells nobody, is read every sample', async (t) => {
    t.equal(await eventually('n2 reports', 20, async () => headOf(await report('n2'), 'legacy')), 'cali-INPUT');
    t.notOk((await report('n2'))!.iptables.some((s) => s.backend === 'nft' && s.ruleCount > 0), 'nothing in the nft backend');
    cluster.exec(cluster.nodeNs('n2'), 'iptables-legacy', ['-I', 'INPUT', '1', '-j', 'ACCEPT']);
    t.equal(await eventually('the legacy change', 15, async () => (headOf(await report('n2'), 'legacy') === 'ACCEPT' ? 'ACCEPT' : undefined)), 'ACCEPT');
    t.ok(monitorOf(n2), 'its monitor listens all the same, for nothing');
  });

  await t.test('SIGTERM: the agent stops cleanly, and its monitor with it', async (t) => {
    const monitor = monitorOf(n1)!;
    n1.child.kill('SIGTERM');
    t.equal(await n1.exited, 0);
    await eventually('the monitor gone', 5, async () => !alive(monitor));
    t.notOk(alive(monitor));
  });
  n3.child.kill('SIGTERM');
  n2.child.kill('SIGTERM');
}

const why = netnsUnavailable();
if (why) {
  t.plan(0, `listener tests skipped: ${why}`);
} else {
  t.setTimeout(180_000);
  await run();
}
