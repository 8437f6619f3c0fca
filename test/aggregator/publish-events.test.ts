// Events and the values ConfigMap against the real Kubernetes API server, written by the
// aggregator as the chart's ServiceAccount: Warning Events on the right Nodes (and on the
// aggregator's Deployment for a finding about no node), found by the real kubectl as an admin
// types it; Normal ...Resolved ones; a repeat counted in its series, across an aggregator restart
// too; a burst of new Nodes held to the rate limit with the rest counted as dropped; and the
// values ConfigMap equal to GET /v1/illumio/values.yaml as the cluster grows.
import t from 'tap';
import { VALUES_KEY } from '../../aggregator/publish/values-configmap.js';
import { eventually } from '../support/cluster.js';
import { IDS, NAMESPACE, agentReport as report, kubectl, nodeObject, startAggregator, startCluster, type Harness } from '../support/publish-harness.js';
import { requireKube } from '../support/kube-apiserver.js';

const VALUES_PATH = `/api/v1/namespaces/${NAMESPACE}/configmaps/nodeprep-illumio-values`;

interface KubeEvent {
  metadata: { name: string; namespace: string };
  involvedObject: { kind: string; name: string; namespace?: string; uid?: string };
  related?: { kind: string; name: string; namespace?: string };
  type: string;
  reason: string;
  message: string;
  count: number;
  source: { component: string };
}

async function run(): Promise<void> {
  t.setTimeout(300_000);
  const api = await startCluster(t);
  // The aggregator's Deployment, for the Events of findings about no node (nothing runs it here).
  const deployment = await api.create({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'nodeprep-aggregator', namespace: NAMESPACE },
    spec: { selector: { matchLabels: { app: 'a' } }, template: { metadata: { labels: { app: 'a' } }, spec: { containers: [{ name: 'a', image: 'registry.invalid/a' }] } } },
  });

  let agg: Harness = await startAggregator(api);
  t.teardown(() => agg.close());
  await agg.send(report('worker-1', IDS.one, 'append'));
  await agg.send(report('worker-2', IDS.two, 'insert'));

  const events = async (namespace = 'default') => (await api.must<{ items: KubeEvent[] }>('GET', `/api/v1/namespaces/${namespace}/events`)).items.filter((e) => e.source.component === 'nodeprep-aggregator');
  const on = (list: KubeEvent[], node: string) => list.filter((e) => e.involvedObject.name === node).map((e) => `${e.type} ${e.reason}`).sort();
  const metric = (name: string, label: string) => agg.metric(new RegExp(`^${name}\\{${label}\\} (\\d+)$`, 'm'));

  await t.test('raised: Warning Events on the Nodes each finding concerns, and on the Deployment', async (t) => {
    const list = await eventually('the Events', 30, async () => {
      const l = await events();
      return on(l, 'worker-3').length === 3 && on(l, 'worker-2').length === 4 ? l : undefined;
    });
    // worker-2 votes Insert against worker-1's Append: mixed modes too. The clones share a system
    // UUID: an info finding, a Normal Event.
    t.same(on(list, 'worker-2'), ['Normal SystemUuidDuplicate', 'Warning CalicoInsertMode', 'Warning CalicoModeMixed', 'Warning MachineIdDuplicate']);
    t.same(on(list, 'worker-3'), ['Normal SystemUuidDuplicate', 'Warning MachineIdDuplicate', 'Warning NodeNoAgent']);
    t.same(on(list, 'worker-1'), [], 'nothing about worker-1');
    const duplicate = list.find((e) => e.reason === 'MachineIdDuplicate')!;
    t.match(duplicate, { involvedObject: { kind: 'Node', uid: duplicate.involvedObject.name }, count: 1 });
    t.match(duplicate.message, /machine ID/i);
    const onDeployment = await eventually('the Deployment\'s Event', 30, async () => (await events(NAMESPACE)).find((e) => e.reason === 'IllumioRootCaMissing'));
    t.match(onDeployment, { type: 'Warning', involvedObject: { kind: 'Deployment', name: 'nodeprep-aggregator', namespace: NAMESPACE, uid: deployment.metadata.uid } }, 'the root CA: about no node');
    t.match(onDeployment.related, { kind: 'ConfigMap', namespace: 'illumio-system', name: 'root-ca-config' }, 'the ConfigMap that decides it, named as related');

    // What an admin types.
    const forNode = await kubectl(api, ['events', '--for', 'node/worker-3']);
    t.equal(forNode.status, 0, forNode.stderr);
    t.match(forNode.stdout, /Warning\s+MachineIdDuplicate\s+Node\/worker-3/);
    t.match(forNode.stdout, /Warning\s+NodeNoAgent\s+Node\/worker-3/);
    const described = await kubectl(api, ['describe', 'node', 'worker-2']);
    t.match(described.stdout, /Warning\s+MachineIdDuplicate\s+\S+\s+nodeprep-aggregator\s+/, 'kubectl describe node shows them, from nodeprep-aggregator');
    t.match(described.stdout, /Warning\s+CalicoInsertMode\s/);
    const deploymentEvents = await kubectl(api, ['-n', NAMESPACE, 'describe', 'deployment', 'nodeprep-aggregator']);
    t.match(deploymentEvents.stdout, /Warning\s+IllumioRootCaMissing\s/);
  });

  await t.test('resolved: a Normal ...Resolved Event; raised again: the same Event, counted', async (t) => {
    await agg.send(report('worker-2', IDS.two, 'append'));
    const resolved = await eventually('CalicoInsertModeResolved and CalicoModeMixedResolved', 30, async () => {
      const l = await events();
      return l.some((e) => e.reason === 'CalicoModeMixedResolved') ? l.find((e) => e.reason === 'CalicoInsertModeResolved' && e.involvedObject.name === 'worker-2') : undefined;
    });
    t.equal(resolved.type, 'Normal');
    t.match(resolved.message, /^Resolved: /);
    const before = (await events()).length;
    await agg.send(report('worker-2', IDS.two, 'insert'));
    const again = await eventually('the series', 30, async () => {
      const l = await events();
      const insert = l.find((e) => e.reason === 'CalicoInsertMode' && e.involvedObject.name === 'worker-2' && e.count === 2);
      return insert && l.some((e) => e.reason === 'CalicoModeMixed' && e.count === 2) ? insert : undefined;
    });
    t.ok(again, 'count 2 on the first Event');
    t.equal((await events()).length, before, 'no new Event object');
    t.ok((await metric('nodeprep_events_written_total', 'action="patch"')) >= 1);
  });

  await t.test('the values ConfigMap: what GET /v1/illumio/values.yaml answers, written only when it changes', async (t) => {
    const http = async () => (await agg.app.inject({ url: '/v1/illumio/values.yaml', headers: { authorization: `Bearer ${agg.readToken}` } })).body;
    const configMap = async () => (await api.must<{ data?: Record<string, string> }>('GET', VALUES_PATH)).data?.[VALUES_KEY];
    await eventually('the values written', 30, async () => (await configMap()) === (await http()) || undefined);
    t.match(await configMap(), /cven:/);
    const viaKubectl = await kubectl(api, ['-n', NAMESPACE, 'get', 'configmap', 'nodeprep-illumio-values', '-o', 'jsonpath={.data.illumio-values\\.yaml}']);
    t.equal(viaKubectl.stdout.trim(), (await http()).trim(), 'kubectl -o jsonpath gives it');
    const writes = await metric('nodeprep_values_configmap_writes_total', 'result="applied"');
    await new Promise((r) => setTimeout(r, 3000));
    t.equal(await metric('nodeprep_values_configmap_writes_total', 'result="applied"'), writes, 'nothing changed: no write');
  });

  await t.test('a restarted aggregator continues each Event\'s series rather than adding Events', async (t) => {
    const before = await events();
    const duplicateCount = before.find((e) => e.reason === 'MachineIdDuplicate' && e.involvedObject.name === 'worker-3')!.count;
    await agg.close();
    agg = await startAggregator(api);
    await agg.send(report('worker-1', IDS.one, 'append'));
    await agg.send(report('worker-2', IDS.two, 'insert'));
    await eventually('the series continued', 30, async () => (await events()).find((e) => e.reason === 'MachineIdDuplicate' && e.involvedObject.name === 'worker-3' && e.count === duplicateCount + 1));
    t.equal((await events()).length, before.length, 'the same Event objects');
  });

  await t.test('many new Nodes at once: Events up to the burst, the rest dropped and counted; the values follow', async (t) => {
    await agg.close();
    // A burst of 3 (100 by default) and no refill within the test.
    agg = await startAggregator(api, { publish: { events: { correlator: { burst: 3, refillMs: 3_600_000 }, timing: { retryDelayMs: 500 } }, values: { minIntervalMs: 300, checkIntervalMs: 500, resyncMs: 1_000, debounceMs: 50 } } });
    await agg.send(report('worker-1', IDS.one, 'append'));
    await agg.send(report('worker-2', IDS.two, 'insert'));
    const fresh = Array.from({ length: 20 }, (_, i) => `fresh-${String(i).padStart(2, '0')}`);
    for (const [i, name] of fresh.entries()) await api.create(nodeObject(name, `${String(i + 10).padStart(2, '0')}${IDS.one.slice(2)}`));
    const dropped = await eventually('the drops counted', 30, async () => {
      const n = await metric('nodeprep_events_dropped_total', 'reason="burst"');
      return n >= 20 ? n : undefined;
    });
    await new Promise((r) => setTimeout(r, 1500)); // the writes admitted have landed
    const written = (await metric('nodeprep_events_written_total', 'action="create"')) + (await metric('nodeprep_events_written_total', 'action="patch"'));
    t.equal(written, 3, 'exactly the burst written');
    const aboutFresh = (await events()).filter((e) => fresh.includes(e.involvedObject.name));
    t.ok(aboutFresh.length <= 3, `${aboutFresh.length} Events about the 20 new Nodes`);
    t.ok(dropped >= 20, `${dropped} dropped, counted in nodeprep_events_dropped_total{reason="burst"}`);
    t.ok(agg.lines.filter((l) => l.msg === 'Events dropped by the rate limit (counted in nodeprep_events_dropped_total)').length === 1, 'said once');

    // 23 Nodes: the sizing's tier goes up, and the ConfigMap with it.
    const http = async () => (await agg.app.inject({ url: '/v1/illumio/values.yaml', headers: { authorization: `Bearer ${agg.readToken}` } })).body;
    await eventually('the new values in the ConfigMap', 30, async () => {
      const now = await http();
      return /nodes 23\b/.test(now) && (await api.must<{ data?: Record<string, string> }>('GET', VALUES_PATH)).data?.[VALUES_KEY] === now;
    });
    t.pass('the ConfigMap follows the HTTP answer');
  });

  await t.test('the values ConfigMap deleted: said once; the aggregator may not create it', async (t) => {
    await api.must('DELETE', VALUES_PATH);
    await eventually('said', 20, async () => agg.lines.some((l) => String(l.msg).startsWith('values ConfigMap not found')));
    await new Promise((r) => setTimeout(r, 2500));
    t.equal(agg.lines.filter((l) => String(l.msg).startsWith('values ConfigMap not found')).length, 1, 'once');
    t.equal((await api.request('GET', VALUES_PATH)).status, 404, 'not created: the chart creates it');
  });
}

const why = requireKube();
if (why) t.plan(0, why);
else await run();
