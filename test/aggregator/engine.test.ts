// The engine over time: replace-not-merge, cluster-wide findings from its indexes, staleness,
// and transitions (each raised and resolved once). The clock is a variable; nothing waits.
import { Writable } from 'node:stream';
import t from 'tap';
import { pino } from 'pino';
import { logTransition } from '../../aggregator/publish/alert-log.js';
import { compileChainPatterns } from '../../aggregator/detect/illumio.js';
import type { ClusterFacts } from '../../aggregator/cluster/facts.js';
import { Engine, type Transition } from '../../aggregator/engine.js';
import type { NodeReport } from '../../protocol/report.js';
import { buildReport } from '../support/reports.js';

function harness(ttlSeconds = 10, dropAfterSeconds = 100) {
  let now = Date.parse('2025-01-01T00:00:00Z');
  const transitions: Transition[] = [];
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        done();
      },
    }),
  );
  const engine = new Engine({
    ttlSeconds,
    dropAfterSeconds,
    detect: { isIllumioChain: compileChainPatterns('illumio*') },
    now: () => now,
    onTransition: (transition) => {
      transitions.push(transition);
      logTransition(log, transition);
    },
  });
  const ingest = (report: NodeReport) => engine.ingest(report, JSON.stringify(report));
  const advance = (seconds: number) => {
    now += seconds * 1000;
    engine.sweep();
  };
  const seen = () => transitions.map((x) => `${x.kind} ${x.finding.code} ${x.finding.nodes.join(',')}`);
  const findings = (query: Parameters<Engine['listFindings']>[0] = {}) => engine.listFindings(query).findings;
  const nodes = () => engine.listNodes({ limit: 500 }).nodes;
  return { engine, ingest, advance, transitions, lines, seen, findings, nodes };
}

const SHARED = '0123456789abcdef0123456789abcdef';

t.test('two nodes share a machine ID, then one is fixed: raised once, resolved once', async (t) => {
  const h = harness();
  h.ingest(buildReport({ name: 'a', machineId: SHARED }));
  t.same(h.seen(), [], 'one node alone is no duplicate');
  const response = h.ingest(buildReport({ name: 'b', machineId: SHARED }));
  t.same(h.seen(), ['raised MACHINE_ID_DUPLICATE a,b']);
  t.same(response.map((f) => f.code), ['MACHINE_ID_DUPLICATE'], 'the reporting node is told');

  // Steady state: the same reports again change nothing and log nothing.
  for (let i = 0; i < 3; i++) {
    h.ingest(buildReport({ name: 'a', machineId: SHARED }));
    h.ingest(buildReport({ name: 'b', machineId: SHARED }));
  }
  t.equal(h.transitions.length, 1, 'no transition per report');
  const [duplicate] = h.findings();
  t.match(duplicate, { code: 'MACHINE_ID_DUPLICATE', severity: 'critical', nodes: ['a', 'b'], evidence: { machineId: SHARED, nodeCount: 2, sources: { agent: 2, kubelet: 0 } } });
  t.match(duplicate!.remediation, /systemd-machine-id-setup/);
  t.match(duplicate!.remediation, /D-Bus/);

  h.ingest(buildReport({ name: 'b' })); // b regenerated its ID
  t.same(h.seen(), ['raised MACHINE_ID_DUPLICATE a,b', 'resolved MACHINE_ID_DUPLICATE a,b']);
  t.equal(h.transitions[0]!.finding.id, h.transitions[1]!.finding.id, 'same id raised and resolved');
  t.same(h.findings(), []);

  const alerts = h.lines.filter((l) => l.msg === 'finding raised' || l.msg === 'finding resolved');
  t.equal(alerts.length, 2, 'each logged once');
  t.match(alerts[0], { msg: 'finding raised', code: 'MACHINE_ID_DUPLICATE', severity: 'critical', nodes: ['a', 'b'], id: duplicate!.id });
  t.match(alerts[1], { msg: 'finding resolved', code: 'MACHINE_ID_DUPLICATE', id: duplicate!.id });
  t.notOk(JSON.stringify(h.lines).includes('iptables'), 'no report content in the logs');
});

t.test('a third node joining a duplicate group is the same finding', async (t) => {
  const h = harness();
  for (const name of ['a', 'b', 'c']) h.ingest(buildReport({ name, machineId: SHARED }));
  t.equal(h.transitions.length, 1);
  t.same(h.findings()[0]!.nodes, ['a', 'b', 'c']);
  h.ingest(buildReport({ name: 'c' }));
  t.equal(h.transitions.length, 1, 'still two nodes share it');
});

t.test('a report replaces the previous one: what it no longer says is resolved', async (t) => {
  const h = harness();
  h.ingest(buildReport({ name: 'a', calico: 'insert' }));
  t.same(h.seen(), ['raised CALICO_INSERT_MODE a']);
  const since = h.findings()[0]!.since;
  h.advance(1);
  h.ingest(buildReport({ name: 'a', calico: 'insert' }, { agent: { version: '0.2.0' } })); // new facts, same problem
  t.equal(h.findings()[0]!.since, since, 'since survives a replacement');
  h.ingest(buildReport({ name: 'a' }));
  t.same(h.seen(), ['raised CALICO_INSERT_MODE a', 'resolved CALICO_INSERT_MODE a']);
});

t.test('nodes disagreeing on the mode: CALICO_MODE_MIXED, per cluster', async (t) => {
  const h = harness();
  h.ingest(buildReport({ name: 'a', cluster: 'one' }));
  h.ingest(buildReport({ name: 'b', cluster: 'one' }));
  h.ingest(buildReport({ name: 'c', cluster: 'two', calico: 'insert' }));
  t.same(h.seen(), ['raised CALICO_INSERT_MODE two/c'], 'different clusters do not mix; nodes are named <cluster>/<node>');
  h.ingest(buildReport({ name: 'd', cluster: 'one', calico: 'insert' }));
  t.same(h.seen().slice(1).sort(), ['raised CALICO_INSERT_MODE one/d', 'raised CALICO_MODE_MIXED one/d']);
  const mixed = h.findings({ code: 'CALICO_MODE_MIXED' })[0]!;
  t.match(mixed.evidence, { cluster: 'one', counts: { insert: 1, append: 2 }, minority: 'insert' });
  t.ok(h.findings({ node: 'one/a' }).some((f) => f.code === 'CALICO_MODE_MIXED'), 'every voting node of the cluster is concerned');
  h.ingest(buildReport({ name: 'd', cluster: 'one' }));
  t.same(h.seen().slice(3).sort(), ['resolved CALICO_INSERT_MODE one/d', 'resolved CALICO_MODE_MIXED one/d']);
});

t.test('a silent node goes stale, leaves the live indexes, comes back, and is dropped later', async (t) => {
  const h = harness(10, 100);
  h.ingest(buildReport({ name: 'a', machineId: SHARED }));
  h.ingest(buildReport({ name: 'b', machineId: SHARED }));
  h.advance(5);
  h.ingest(buildReport({ name: 'b', machineId: SHARED }));
  h.advance(5.5); // a: 10.5 s silent, b: 5.5 s
  t.same(h.seen(), ['raised MACHINE_ID_DUPLICATE a,b', 'resolved MACHINE_ID_DUPLICATE a,b', 'raised NODE_STALE a'], 'a stale node duplicates nobody');
  t.same(h.nodes().map((n) => [n.name, n.stale]), [['a', true], ['b', false]]);
  t.equal(h.engine.counts().stale, 1);
  h.advance(1);
  t.equal(h.transitions.length, 3, 'stale is raised once');

  h.ingest(buildReport({ name: 'a', machineId: SHARED }));
  t.same(h.seen().slice(3).sort(), ['raised MACHINE_ID_DUPLICATE a,b', 'resolved NODE_STALE a']);
  t.equal(h.engine.counts().stale, 0);

  h.ingest(buildReport({ name: 'a' }));
  h.advance(15);
  t.same(h.seen().slice(5).sort(), ['raised NODE_STALE a', 'raised NODE_STALE b', 'resolved MACHINE_ID_DUPLICATE a,b']);
  h.advance(200);
  const tail = h.transitions.slice(8).map((x) => `${x.kind} ${x.finding.code} ${x.finding.nodes.join(',')}${x.reason ? ` (${x.reason})` : ''}`);
  t.same(tail.sort(), ['resolved NODE_STALE a (node dropped)', 'resolved NODE_STALE b (node dropped)']);
  t.equal(h.engine.counts().known, 0, 'both dropped');
  t.same(h.findings(), []);
});

t.test('a heartbeat (same facts, new collectedAt) only refreshes the node', async (t) => {
  const h = harness();
  h.ingest(buildReport({ name: 'a', calico: 'insert' }));
  h.advance(8);
  h.ingest(buildReport({ name: 'a', calico: 'insert' }, { collectedAt: '2025-01-01T00:00:08.000Z' }));
  h.advance(8);
  t.equal(h.transitions.length, 1, 'not stale: the heartbeat counted');
  const node = h.engine.getNode('a')!;
  t.equal(node.report?.collectedAt, '2025-01-01T00:00:08.000Z');
  t.equal(node.lastSeen, '2025-01-01T00:00:08.000Z');
  t.equal(node.activeFindings.length, 1);
});

t.test('getNode returns the report as received; listFindings filters', async (t) => {
  const h = harness();
  const report = buildReport({ name: 'a', calico: 'insert' }, { illumio: { hostDataDir: false, serverVen: true } });
  h.ingest(report);
  h.ingest(buildReport({ name: 'b', calico: 'none' }));
  t.same(h.engine.getNode('a')!.report, report);
  t.equal(h.engine.getNode('nope'), undefined);
  t.same(h.findings().map((f) => f.code), ['ILLUMIO_SERVER_VEN', 'CALICO_INSERT_MODE'], 'most severe first');
  t.same(h.findings({ severity: 'critical' }).map((f) => f.code), ['ILLUMIO_SERVER_VEN']);
  t.same(h.findings({ code: 'CALICO_INSERT_MODE' }).map((f) => f.nodes), [['a']]);
  t.same(h.findings({ node: 'b' }), []);
  t.same(h.findings({ node: 'unknown' }), []);
  t.same(h.nodes().map((n) => [n.name, n.findings, n.calicoMode]), [['a', 2, 'insert'], ['b', 0, undefined]]);
});

t.test('NODE_NO_AGENT waits its grace from the start, and again after an agent was turned away', async (t) => {
  const h = harness(10); // the grace: the TTL, 10 s
  const node = (name: string) => ({ name, createdAt: Date.parse('2024-01-01T00:00:00Z'), taints: [] });
  h.engine.setClusterFacts({
    homeCluster: '',
    nodes: new Map(['a', 'b'].map((name) => [name, node(name)])),
    agentPods: new Map(),
    calico: { felixConfigurations: new Map(), felixCrdServed: false, configMaps: new Map(), readableConfigMaps: [] },
    illumio: { cvenNodes: new Set() },
  } satisfies ClusterFacts);
  h.advance(5);
  t.same(h.seen().filter((s) => s.includes('NODE_NO_AGENT')), [], '5 s after the start: within the grace');
  // A 503 to an agent whose token could not be reviewed: it retries, and its node is unknown.
  h.engine.agentTurnedAway();
  h.advance(6);
  t.same(h.seen().filter((s) => s.includes('NODE_NO_AGENT')), [], '11 s after the start, 6 s after the 503: nothing yet');
  h.ingest(buildReport({ name: 'a' }));
  h.advance(3);
  t.same(h.seen().filter((s) => s.includes('NODE_NO_AGENT')), [], '9 s after the 503: nothing yet');
  h.advance(2);
  t.same(h.seen().filter((s) => s.includes('NODE_NO_AGENT')), ['raised NODE_NO_AGENT b'], 'the grace after the 503 over: the node that never reported, only');
});
