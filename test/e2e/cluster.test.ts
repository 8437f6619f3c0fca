// End to end: four nodes as network namespaces, each with its own host-root tree, its own real
// iptables rules (loaded with iptables-restore) and a real `nodeprep-agent run`, reporting over
// veth pairs to a real `nodeprep-aggregator` in a fifth namespace. Checks the findings over
// HTTP and the alert lines in the aggregator's output, then fixes a node, kills and restarts the
// aggregator, takes it away while the agents run, and stops an agent.
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { Finding } from '../../protocol/findings.js';
import { Cluster, eventually, removeStaleNamespaces, type Proc } from '../support/cluster.js';
import { IPTABLES_FIXTURES } from '../support/fixtures.js';
import { logCaughtUp } from '../support/log-caught-up.js';
import { netnsUnavailable } from '../support/netns.js';


const rules = (name: string) => readFileSync(path.join(IPTABLES_FIXTURES, `${name}.rules`), 'utf8');
const ID = { shared: '5f0c3b2a9d8e4f7a8b6c1d2e3f4a5b6c', n3: '0a1b2c3d4e5f40718293a4b5c6d7e8f9', n4: 'f9e8d7c6b5a44392a1b0c9d8e7f6a5b4', fixed: '3c4d5e6f708192a3b4c5d6e7f8091a2b' };
// Short intervals: the flags are the agent's own, the figures only the test's.
const AGENT_FLAGS = ['--sample-interval', '0.3', '--heartbeat-interval', '1'];
const TTL_SECONDS = 3;

interface Alert {
  msg: string;
  id: string;
  code: string;
  severity: string;
  nodes: string[];
}

function alerts(proc: Proc, msg: 'finding raised' | 'finding resolved'): Alert[] {
  return proc.lines.flatMap((line) => {
    try {
      const entry = JSON.parse(line) as Alert;
      return entry.msg === msg ? [entry] : [];
    } catch {
      return [];
    }
  });
}

const key = (f: { code: string; nodes: string[] }) => `${f.code} ${[...f.nodes].sort().join(',')}`;

async function run(): Promise<void> {
  removeStaleNamespaces();
  const cluster = new Cluster();
  t.teardown(() => cluster.cleanup());
  process.once('exit', () => cluster.cleanup());

  const findings = async () => (await cluster.get<{ findings: Finding[] }>('/v1/findings'))?.body.findings;
  const findingKeys = async () => (await findings())?.map(key).sort();
  /** Waits until the active findings are exactly `want` (by code and nodes). */
  const settle = (what: string, want: string[], seconds = 25) =>
    eventually(what, seconds, async () => {
      const keys = await findingKeys();
      return JSON.stringify(keys) === JSON.stringify([...want].sort()) ? keys : undefined;
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}; findings now: ${JSON.stringify(await findingKeys())}`);
    });

  // The nodes. n1 and n2 were cloned from one image; n1 runs Calico in Insert mode; n3 has a
  // product whose chains come before Calico's appended hooks (the arrangement Illumio wants);
  // on n4 Calico and that product keep taking the head of filter INPUT from each other.
  cluster.addNode('n1', ID.shared);
  cluster.addNode('n2', ID.shared);
  cluster.addNode('n3', ID.n3);
  cluster.addNode('n4', ID.n4);
  const load = (node: string, ruleset: string) => cluster.exec(cluster.nodeNs(node), 'iptables-nft-restore', [], rules(ruleset));
  load('n1', 'calico-insert.v4.nft');
  load('n2', 'calico-append.v4.nft');
  load('n3', 'foreign-first-append.v4.nft');
  load('n4', 'foreign-first-append.v4.nft');
  const hook = '-m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT';
  // Two writers, as on a node where Felix and the VEN fight: Felix's moves through
  // iptables-nft-restore, the VEN's through a program of its own, here the same iptables binary
  // under another name (xtables-nft-multi runs the tool its first argument names), so that the
  // kernel names each commit's process differently.
  const ven = path.join(cluster.dir, 'illumio-ven');
  copyFileSync(execFileSync('sh', ['-c', 'command -v xtables-nft-multi'], { encoding: 'utf8' }).trim(), ven);
  const toTop = (rule: string, restore: string) => `printf '*filter\\n-D INPUT ${rule}\\n-I INPUT 1 ${rule}\\nCOMMIT\\n' | ${restore} --noflush`;
  // Each move is one iptables-restore transaction, as Felix makes it: no sample sees a half move.
  cluster.background(cluster.nodeNs('n4'), `while :; do ${toTop(hook, 'iptables-nft-restore')}; sleep 0.7; ${toTop('-j illumio-INPUT', `${ven} iptables-restore`)}; sleep 0.7; done`);

  const aggregatorEnv = { NODE_TTL_SECONDS: String(TTL_SECONDS), LOG_LEVEL: 'info' };
  let aggregator = cluster.startAggregator(aggregatorEnv);
  for (const node of ['n1', 'n2', 'n3', 'n4']) cluster.startAgent(node, AGENT_FLAGS);

  const initial = ['MACHINE_ID_DUPLICATE n1,n2', 'CALICO_INSERT_MODE n1', 'CALICO_MODE_MIXED n1', 'CALICO_ILLUMIO_CONFLICT n4'];

  await t.test('the findings are exactly those the nodes call for', async (t) => {
    await settle('initial findings', initial);
    // Steady: still the same a few samples and a heartbeat later.
    await new Promise((r) => setTimeout(r, 1500));
    t.same(await findingKeys(), [...initial].sort());
    const conflict = (await findings())!.find((f) => f.code === 'CALICO_ILLUMIO_CONFLICT')!;
    t.match(JSON.stringify(conflict.evidence), /illumio-INPUT/, 'the fight names its other owner');
    // The kernel's names of the two writers (iptables-nft-restore cut at 15 characters).
    t.match(conflict.message, /^iptables-nft-re \(cali-INPUT\) and illumio-ven \(illumio-INPUT\) took the head of filter INPUT from each other \d+ times in \d+ (seconds?|minutes?), on n4: /, 'the fight names both writers');
    const nodes = await cluster.get<{ nodes: { name: string; stale: boolean }[] }>('/v1/nodes');
    t.same(nodes?.body.nodes.map((n) => n.name).sort(), ['n1', 'n2', 'n3', 'n4']);
  });

  await t.test('each alert is logged once when raised', async (t) => {
    const active = (await findings())!;
    await logCaughtUp(() => active.every((f) => alerts(aggregator, 'finding raised').some((a) => a.id === f.id)));
    const raised = alerts(aggregator, 'finding raised');
    for (const f of active) {
      const lines = raised.filter((a) => a.id === f.id);
      t.equal(lines.length, 1, `one "finding raised" for ${key(f)}`);
      t.same(lines[0] && { code: lines[0].code, severity: lines[0].severity, nodes: lines[0].nodes }, { code: f.code, severity: f.severity, nodes: f.nodes });
    }
    t.same(alerts(aggregator, 'finding resolved'), [], 'nothing resolved yet');
    t.notOk(aggregator.lines.some((l) => l.includes('"iptables"') || l.includes('-A INPUT')), 'no report or ruleset in the log');
  });

  await t.test('fixing n1 (new machine ID, Calico in Append) resolves its findings', async (t) => {
    const before = (await findings())!;
    cluster.setMachineId('n1', ID.fixed);
    cluster.exec(cluster.nodeNs('n1'), 'iptables-nft-restore', [], rules('calico-append.v4.nft'));
    await settle('findings after the fix', ['CALICO_ILLUMIO_CONFLICT n4']);
    const fixed = before.filter((x) => x.nodes.includes('n1'));
    await logCaughtUp(() => fixed.every((f) => alerts(aggregator, 'finding resolved').some((a) => a.id === f.id)));
    const resolved = alerts(aggregator, 'finding resolved');
    for (const f of fixed) {
      t.equal(resolved.filter((a) => a.id === f.id).length, 1, `one "finding resolved" for ${key(f)}`);
    }
    t.equal(resolved.length, 3, 'and nothing else resolved');
  });

  await t.test('the aggregator killed and restarted: everything is back after a heartbeat', async (t) => {
    const before = (await findings())!;
    aggregator.child.kill('SIGKILL');
    await aggregator.exited;
    aggregator = cluster.startAggregator(aggregatorEnv);
    await settle('findings after the restart', ['CALICO_ILLUMIO_CONFLICT n4']);
    const after = (await findings())!;
    t.same(after.map((f) => f.id), before.map((f) => f.id), 'the same finding ids');
    await eventually('all four nodes known again', 10, async () => (await cluster.get<{ nodes: unknown[] }>('/v1/nodes'))?.body.nodes.length === 4);
  });

  await t.test('the aggregator away while the agents run: they deliver when it returns', async (t) => {
    const seenBefore = new Map([...cluster.agents].map(([name, agent]) => [name, agent.lines.length]));
    const outageLines = (name: string) => cluster.agents.get(name)!.lines.slice(seenBefore.get(name));
    aggregator.child.kill('SIGTERM');
    t.equal(await aggregator.exited, 0, 'the aggregator stops cleanly on SIGTERM');
    for (const name of cluster.agents.keys()) {
      await eventually(`${name} notices`, 10, async () => outageLines(name).some((l) => l.includes('aggregator unreachable')));
    }
    // Several samples pass while it is away.
    await new Promise((r) => setTimeout(r, 1500));
    aggregator = cluster.startAggregator(aggregatorEnv);
    await eventually('all four nodes report again', 15, async () => (await cluster.get<{ nodes: unknown[] }>('/v1/nodes'))?.body.nodes.length === 4);
    for (const [name, agent] of cluster.agents) {
      t.equal(agent.child.exitCode, null, `${name}'s agent was not restarted`);
      await eventually(`${name} logs its return`, 10, async () => outageLines(name).some((l) => l.includes('aggregator reachable again')));
      t.equal(outageLines(name).filter((l) => l.includes('aggregator unreachable')).length, 1, `${name}: one line for the outage, not one per sample`);
    }
    await settle('findings after the outage', ['CALICO_ILLUMIO_CONFLICT n4']);
  });

  await t.test('an agent that stops: its node becomes NODE_STALE after the TTL', async (t) => {
    const n3 = cluster.agents.get('n3')!;
    n3.child.kill('SIGTERM');
    t.equal(await n3.exited, 0, 'the agent stops cleanly on SIGTERM');
    await settle('NODE_STALE for n3', ['CALICO_ILLUMIO_CONFLICT n4', 'NODE_STALE n3'], TTL_SECONDS + 10);
    const nodes = await cluster.get<{ nodes: { name: string; stale: boolean }[] }>('/v1/nodes');
    t.same(nodes?.body.nodes.filter((n) => n.stale).map((n) => n.name), ['n3']);
    await logCaughtUp(() => alerts(aggregator, 'finding raised').some((a) => a.code === 'NODE_STALE'));
    t.equal(alerts(aggregator, 'finding raised').filter((a) => a.code === 'NODE_STALE').length, 1);
  });
}

const why = netnsUnavailable();
if (why) {
  t.plan(0, `end-to-end test skipped: ${why}`);
} else {
  t.setTimeout(150_000);
  await run();
}
