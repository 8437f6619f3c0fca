// The Events of a transition and their rate limits, without an API server: client-go's per-object
// token bucket (25, then one per 5 minutes), the aggregator's own bucket over all objects (5,000
// new Nodes are not 5,000 Events), and what each transition becomes (reason, type, object, name).
import t from 'tap';
import { makeFinding } from '../../aggregator/detect/finding.js';
import type { Transition } from '../../aggregator/findings/book.js';
import { DEFAULT_CORRELATOR, EventCorrelator, Lru } from '../../aggregator/publish/event-correlator.js';
import { decidingObject, eventName, eventReason, eventsOf, newEvent, objectKey, type EventContext } from '../../aggregator/publish/event-object.js';
import { FINDING_SEVERITY, type FindingCode } from '../../protocol/findings.js';

const MIN = 60_000;

t.test('per object: a burst of 25, then one every 5 minutes; other objects have their own', async (t) => {
  const c = new EventCorrelator({ ...DEFAULT_CORRELATOR, burst: 1e9 }, 0);
  const results = Array.from({ length: 30 }, () => c.admit('v1/Node//worker-1', 1000));
  t.equal(results.filter((r) => r === undefined).length, 25, '25 at once');
  t.same(new Set(results.slice(25)), new Set(['rate_limited']), 'then rate-limited');
  t.equal(c.admit('v1/Node//worker-2', 1000), undefined, 'another node is not held back by the first');
  t.equal(c.admit('v1/Node//worker-1', 1000 + 4 * MIN), 'rate_limited', 'four minutes later: still nothing');
  t.equal(c.admit('v1/Node//worker-1', 1000 + 5 * MIN + 1), undefined, 'five minutes: one more');
  t.equal(c.admit('v1/Node//worker-1', 1000 + 5 * MIN + 2), 'rate_limited', 'and only one');
});

t.test('over all objects: 5,000 new Nodes are 100 Events at once, then one every 5 s', async (t) => {
  const c = new EventCorrelator(DEFAULT_CORRELATOR, 0);
  const at = 10_000;
  const results = Array.from({ length: 5000 }, (_, i) => c.admit(`v1/Node//node-${i}`, at));
  t.equal(results.filter((r) => r === undefined).length, 100, 'the burst');
  t.equal(results.filter((r) => r === 'burst').length, 4900, 'the rest dropped (and counted by the caller)');
  t.equal(c.admit('v1/Node//late-1', at + 4_000), 'burst', '4 s later: none yet');
  t.equal(c.admit('v1/Node//late-2', at + 5_001), undefined, '5 s later: one');
  t.equal(c.admit('v1/Node//late-3', at + 60_000), undefined, 'a minute later: room again');
});

t.test('the caches forget the least recently used beyond their size', async (t) => {
  const lru = new Lru<string, number>(3);
  for (const k of ['a', 'b', 'c']) lru.set(k, 1);
  lru.get('a');
  lru.set('d', 1);
  t.equal(lru.length, 3);
  t.equal(lru.get('b'), undefined, 'b, the least recently used, is gone');
  t.equal(lru.get('a'), 1, 'a was used: kept');
  const c = new EventCorrelator({ ...DEFAULT_CORRELATOR, cacheSize: 10 }, 0);
  for (let i = 0; i < 50; i++) c.recorded(`e${i}`, { count: 1, firstTimestamp: 'x' });
  t.equal(c.seriesOf('e0'), undefined);
  t.same(c.seriesOf('e49'), { count: 1, firstTimestamp: 'x' });
});

function transition(kind: Transition['kind'], code: FindingCode, nodes: string[], reason?: string, evidence: Record<string, unknown> = {}): Transition {
  const draft = makeFinding(code, nodes.length ? nodes : [code], { nodes, message: `${code} message`, remediation: '', evidence, severity: FINDING_SEVERITY[code] });
  return { kind, finding: { ...draft, since: new Date(0).toISOString() }, nodeCount: nodes.length, ...(reason ? { reason } : {}) };
}

const existing = new Set(['worker-1', 'worker-2', 'worker-3']);
const context: EventContext = {
  homeCluster: '',
  nodeExists: (name) => existing.has(name),
  deployment: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'nodeprep', name: 'nodeprep-aggregator', uid: 'u-1' },
};

t.test('a transition\'s Events: one per Node, Warning on raise, Normal on resolve', async (t) => {
  const raised = eventsOf(transition('raised', 'MACHINE_ID_DUPLICATE', ['worker-1', 'worker-2']), context);
  t.same(raised.map((e) => [e.namespace, e.involvedObject, e.type, e.reason, e.message]), [
    ['default', { apiVersion: 'v1', kind: 'Node', name: 'worker-1', uid: 'worker-1' }, 'Warning', 'MachineIdDuplicate', 'MACHINE_ID_DUPLICATE message'],
    ['default', { apiVersion: 'v1', kind: 'Node', name: 'worker-2', uid: 'worker-2' }, 'Warning', 'MachineIdDuplicate', 'MACHINE_ID_DUPLICATE message'],
  ]);
  const resolved = eventsOf(transition('resolved', 'MACHINE_ID_DUPLICATE', ['worker-1', 'worker-2'], 'node dropped'), context);
  t.same(resolved.map((e) => [e.type, e.reason, e.message]), [['Normal', 'MachineIdDuplicateResolved', 'Resolved (node dropped): MACHINE_ID_DUPLICATE message'], ['Normal', 'MachineIdDuplicateResolved', 'Resolved (node dropped): MACHINE_ID_DUPLICATE message']]);
  t.equal(eventsOf(transition('raised', 'SYSTEM_UUID_DUPLICATE', ['worker-1']), context)[0]!.type, 'Normal', 'an info finding is no warning');
  t.same(eventsOf(transition('resolved', 'NODE_NO_AGENT', ['gone-node'], 'node deleted'), context), [], 'a Node no longer in the API gets none');
  t.same(eventsOf(transition('raised', 'NODE_NO_AGENT', ['prod/worker-1']), context), [], 'another cluster\'s node is no Node here');
  const rootCa = eventsOf(transition('raised', 'ILLUMIO_ROOT_CA_MISSING', []), context);
  t.same(rootCa.map((e) => [e.namespace, e.involvedObject.kind, e.involvedObject.name, e.involvedObject.uid]), [['nodeprep', 'Deployment', 'nodeprep-aggregator', 'u-1']], 'about no node: the aggregator\'s Deployment');
  t.same(eventsOf(transition('raised', 'ILLUMIO_ROOT_CA_MISSING', []), { ...context, deployment: undefined }), [], 'no Deployment known: none');
  t.equal(objectKey(raised[0]!.involvedObject), 'v1/Node//worker-1');
});

t.test('reasons and names', async (t) => {
  t.equal(eventReason('ILLUMIO_PCE_TLS_UNTRUSTED', 'raised'), 'IllumioPceTlsUntrusted');
  t.equal(eventReason('CALICO_INSERT_MODE', 'resolved'), 'CalicoInsertModeResolved');
  const node = { apiVersion: 'v1', kind: 'Node', name: 'worker-1' };
  t.equal(eventName(node, 'MachineIdDuplicate', 'abc'), eventName(node, 'MachineIdDuplicate', 'abc'), 'the same Event, the same name: its series');
  t.not(eventName(node, 'MachineIdDuplicate', 'abc'), eventName(node, 'MachineIdDuplicateResolved', 'abc'));
  t.not(eventName(node, 'MachineIdDuplicate', 'abc'), eventName(node, 'MachineIdDuplicate', 'def'), 'another finding, another series');
  t.match(eventName(node, 'X', 'abc'), /^worker-1\.[0-9a-f]{16}$/);
  const long = eventName({ ...node, name: 'n'.repeat(253) }, 'X', 'abc');
  t.equal(long.length, 253, 'the longest node name still makes a valid name');
});

t.test('about no node: the Deployment regarded, the deciding object named as related', async (t) => {
  const [rootCa] = eventsOf(transition('raised', 'ILLUMIO_ROOT_CA_INVALID', [], undefined, { configMap: 'illumio-system/root-ca-config' }), context);
  t.same(rootCa!.involvedObject, context.deployment, 'regarding the aggregator\'s Deployment (its namespace is ours)');
  t.same(rootCa!.related, { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'illumio-system', name: 'root-ca-config' }, 'related: the root CA ConfigMap');
  t.same(newEvent(rootCa!, '2026-01-01T00:00:00Z', 'pod-1').related, rootCa!.related, 'and written with it');
  const [undersized] = eventsOf(transition('raised', 'ILLUMIO_UNDERSIZED', [], undefined, { workload: 'DaemonSet illumio-system/illumio-ven' }), context);
  t.same(undersized!.related, { apiVersion: 'apps/v1', kind: 'DaemonSet', namespace: 'illumio-system', name: 'illumio-ven' }, 'related: the undersized workload');
  t.notOk('related' in eventsOf(transition('raised', 'ILLUMIO_PCE_UNREACHABLE', [], undefined, { target: 'pce.example:8443' }), context)[0]!, 'nothing decides an unreachable PCE in the cluster: no related');
  t.notOk('related' in eventsOf(transition('raised', 'CALICO_INSERT_MODE', ['worker-1'], undefined, { configMap: 'kube-system/calico-config' }), context)[0]!, 'an Event on a Node has none');
  t.equal(decidingObject({ configMap: 'no slash' }), undefined, 'a malformed reference is no object');
  t.equal(decidingObject({ workload: 'Pod ns/name' }), undefined, 'nor a kind it does not know');
});

t.test('at most 100 Nodes per finding, whatever the finding lists', async (t) => {
  const many = Array.from({ length: 150 }, (_, i) => `node-${String(i).padStart(3, '0')}`);
  const all = { ...context, nodeExists: () => true };
  const drafts = eventsOf(transition('raised', 'NODE_NO_AGENT', many), all);
  t.equal(drafts.length, 100, 'one Event for each of the first 100');
  t.same(drafts.map((d) => d.involvedObject.name), many.slice(0, 100));
});
