// Cluster-view benchmark (issue 9 item 6, issue 11): against the real kube-apiserver,
//  1. 5,000 Node objects shaped like real ones (an image list, conditions, addresses): the
//     aggregator's RSS with the cluster view on and off, and how long the initial list takes;
//     target: under 64 MiB more for 5,000 nodes.
//  2. POST /v1/reports with each agent's own ServiceAccount token (reviewed once, then cached)
//     against the same aggregator with a shared token, same run; target: within 10%.
// Prints figures; asserts nothing. Needs the API server binaries (test/kube/build.sh).
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AggregatorProcess } from '../support/aggregator-process.js';
import { render } from '../support/helm.js';
import { procMemory } from '../support/proc.js';
import { ApiServer, kubeUnavailable, type KubeObject } from '../support/kube-apiserver.js';
import { buildReport } from '../support/reports.js';

const NODES = 5000;
const AGENTS = 500;
const DURATION_S = 10;

interface AutocannonRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (request: AutocannonRequest) => AutocannonRequest;
}
type Autocannon = (options: { url: string; connections: number; duration: number; requests: AutocannonRequest[] }) => Promise<{ requests: { average: number }; non2xx: number }>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const hex = (seed: string) => createHash('md5').update(seed).digest('hex');

/** A Node as a kubelet publishes it: 40 images of a few names each, conditions, addresses. */
function realisticNode(i: number): KubeObject {
  const name = `worker-${String(i).padStart(5, '0')}.prod.example.internal`;
  const images = Array.from({ length: 40 }, (_, k) => ({
    names: [`registry.example.internal/team-${k % 7}/service-${k}@sha256:${hex(`${i}-${k}`)}${hex(`${k}`)}`, `registry.example.internal/team-${k % 7}/service-${k}:v1.${k}.0`],
    sizeBytes: 50_000_000 + k * 1_000_000,
  }));
  const condition = (type: string, status: string) => ({ type, status, lastHeartbeatTime: '2026-11-29T10:00:00Z', lastTransitionTime: '2026-11-01T10:00:00Z', reason: `Kubelet${type}`, message: `kubelet reports ${type} ${status}` });
  return {
    apiVersion: 'v1', kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', 'node.kubernetes.io/instance-type': 'm6i.2xlarge', 'topology.kubernetes.io/zone': `zone-${i % 3}` }, annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' } },
    spec: { podCIDR: `10.${(i >> 8) & 255}.${i & 255}.0/24` },
    status: {
      capacity: { cpu: '8', memory: '32Gi', pods: '110', 'ephemeral-storage': '100Gi' },
      allocatable: { cpu: '7800m', memory: '31Gi', pods: '110', 'ephemeral-storage': '95Gi' },
      conditions: [condition('MemoryPressure', 'False'), condition('DiskPressure', 'False'), condition('PIDPressure', 'False'), condition('Ready', 'True')],
      addresses: [{ type: 'InternalIP', address: `10.1.${(i >> 8) & 255}.${i & 255}` }, { type: 'Hostname', address: name }],
      nodeInfo: {
        machineID: hex(`machine-${i}`), systemUUID: `${hex(`uuid-${i}`).slice(0, 8)}-0000-4000-8000-${hex(`uuid-${i}`).slice(0, 12)}`, bootID: hex(`boot-${i}`),
        kernelVersion: '6.1.0-27-amd64', osImage: 'Debian GNU/Linux 12 (bookworm)', containerRuntimeVersion: 'containerd://1.7.24',
        kubeletVersion: 'v1.37.2', kubeProxyVersion: 'v1.37.2', operatingSystem: 'linux', architecture: 'amd64',
      },
      images,
    },
  };
}

async function createAll(api: ApiServer, objects: KubeObject[], path: (o: KubeObject) => string, parallel = 16): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < objects.length) {
      const o = objects[next++]!;
      await api.must('POST', path(o), o);
    }
  }));
}

const rssMiB = (pid: number): number => (procMemory(pid)?.rssKiB ?? 0) / 1024;

export async function benchClusterView(): Promise<void> {
  const why = kubeUnavailable();
  if (why) {
    console.log(`cluster-view bench skipped: ${why}`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'nodeprep-bench-view-'));
  const api = await ApiServer.start();
  try {
    await api.ensureNamespace('nodeprep');
    for (const o of render({ release: 'nodeprep', namespace: 'nodeprep' }).filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'ServiceAccount'].includes(o.kind))) await api.create(o as KubeObject);
    const nodes = Array.from({ length: NODES }, (_, i) => realisticNode(i));
    let t0 = performance.now();
    await createAll(api, nodes, () => '/api/v1/nodes');
    const nodeBytes = JSON.stringify(nodes[0]).length;
    console.log(`cluster-view bench: ${NODES} Node objects (${(nodeBytes / 1024).toFixed(1)} KiB of JSON each, 40 images) created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const kubeconfig = api.kubeconfigFor(await api.serviceAccountToken('nodeprep', 'nodeprep-aggregator'), 'aggregator');
    writeFileSync(join(dir, 'tokens'), 'shared-bench-token\n');
    const env = { HOME: dir, AGENT_SERVICE_ACCOUNT: 'nodeprep/nodeprep-agent', AUTH_TOKEN_FILE: join(dir, 'tokens'), NODE_TTL_SECONDS: '3600', LOG_LEVEL: 'info' }; // info: the harness waits for "Server listening"

    const off = await AggregatorProcess.start({ ...env, CLUSTER_VIEW: 'off' });
    await new Promise((r) => setTimeout(r, 3000));
    const rssOff = rssMiB(off.child.pid!);
    await off.stop();

    t0 = performance.now();
    const on = await AggregatorProcess.start({ ...env, KUBECONFIG: kubeconfig });
    let listed = 0;
    for (;;) {
      const ready = (await on.get<{ clusterView: { state: string } }>('/readyz')).body;
      if (ready.clusterView.state === 'synced') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    listed = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 3000));
    const rssOn = rssMiB(on.child.pid!);
    const cost = rssOn - rssOff;
    console.log(`  aggregator RSS: view off ${rssOff.toFixed(1)} MiB, view on with ${NODES} Nodes ${rssOn.toFixed(1)} MiB: ${cost.toFixed(1)} MiB more, ${((cost * 1024 * 1024) / NODES).toFixed(0)} bytes a node (target < 64 MiB more) ${cost < 64 ? 'OK' : 'ABOVE TARGET'}`);
    console.log(`  start to the view synced (every informer listed, ${NODES} Nodes in pages of 500): ${(listed / 1000).toFixed(1)} s`);

    // Ingest: the agents' own tokens, each bound to a pod on its node, against a shared token.
    const pods: KubeObject[] = [];
    for (let i = 0; i < AGENTS; i++) {
      pods.push({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `agent-${i}`, namespace: 'nodeprep' }, spec: { nodeName: nodes[i]!.metadata.name, serviceAccountName: 'nodeprep-agent', containers: [{ name: 'agent', image: 'registry.invalid/agent' }] } });
    }
    await createAll(api, pods, () => '/api/v1/namespaces/nodeprep/pods');
    const agents: { token: string; body: string }[] = [];
    for (let i = 0; i < AGENTS; i++) {
      const pod = await api.must('GET', `/api/v1/namespaces/nodeprep/pods/agent-${i}`);
      const token = await api.serviceAccountToken('nodeprep', 'nodeprep-agent', { audiences: ['nodeprep'], boundPod: { name: `agent-${i}`, uid: String(pod.metadata.uid) } });
      agents.push({ token, body: JSON.stringify(buildReport({ name: nodes[i]!.metadata.name, machineId: hex(`app-${i}`) })) });
    }
    const run = async (tokenOf: (i: number) => string, duration: number) => {
      let n = 0;
      return autocannon({
        url: `${on.base}/v1/reports`, connections: 16, duration,
        requests: [{ method: 'POST', setupRequest: (req) => {
          const i = n++ % AGENTS;
          return { ...req, body: agents[i]!.body, headers: { 'content-type': 'application/json', authorization: `Bearer ${tokenOf(i)}` } };
        } }],
      });
    };
    await run((i) => agents[i]!.token, 3); // every token reviewed once, then cached
    await run(() => 'shared-bench-token', 3);
    // Alternating runs, each kind's median: the rate drifts within one process (heap, JIT), and
    // whichever ran second would carry the drift.
    const rates: Record<'shared' | 'sa', number[]> = { shared: [], sa: [] };
    let non2xx = 0;
    for (let round = 0; round < 3; round++) {
      for (const kind of round % 2 === 0 ? (['shared', 'sa'] as const) : (['sa', 'shared'] as const)) {
        const result = await run(kind === 'shared' ? () => 'shared-bench-token' : (i) => agents[i]!.token, DURATION_S);
        rates[kind].push(result.requests.average);
        non2xx += result.non2xx;
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const shared = median(rates.shared);
    const sa = median(rates.sa);
    const ratio = sa / shared;
    console.log(`  POST /v1/reports, ${AGENTS} nodes, median of 3 alternating ${DURATION_S} s runs: shared token ${shared.toFixed(0)} req/s, each agent's ServiceAccount token ${sa.toFixed(0)} req/s (non-2xx ${non2xx}): ${(ratio * 100).toFixed(0)}% (target within 10%) ${ratio >= 0.9 ? 'OK' : 'BELOW TARGET'}`);
    await on.stop();
  } finally {
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
