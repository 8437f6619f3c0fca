// A simulated cluster of thousands of nodes on this machine (shared/docs/simulated-cluster.md):
// the real kube-apiserver, etcd, kube-controller-manager and kube-scheduler, and kwok playing the
// kubelets of fake nodes (Node objects annotated kwok.x-k8s.io/node=fake): their pods get a
// Running status, no container runs. Everything on loopback, stopped and removed with the API
// server (kube-apiserver.ts), a killed earlier run's leftovers included.
import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ApiServer, freePort, requireKube, type KubeObject } from './kube-apiserver.js';

export const SIM_BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok', 'kwok-stages.yaml'];

/** The reason to skip a simulated-cluster test here (and an error in CI), or undefined. */
export function requireSimCluster(): string | undefined {
  return requireKube(SIM_BINARIES);
}

export class SimCluster {
  private constructor(readonly api: ApiServer) {}

  static async start(): Promise<SimCluster> {
    // Thousands of nodes heartbeat and thousands of pods start at once: room for them in flight.
    const api = await ApiServer.start({ flags: ['--max-requests-inflight=1000', '--max-mutating-requests-inflight=500'] });
    const cluster = new SimCluster(api);
    try {
      await cluster.startComponents();
    } catch (err) {
      await api.stop();
      throw err;
    }
    return cluster;
  }

  private async startComponents(): Promise<void> {
    const { api } = this;
    const kubeconfig = api.adminKubeconfig;
    const qps = ['--kube-api-qps=100', '--kube-api-burst=200'];
    api.spawnComponent('kube-controller-manager', [
      `--kubeconfig=${kubeconfig}`, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`,
      `--service-account-private-key-file=${api.serviceAccountKey}`, `--root-ca-file=${api.caFile}`,
      '--use-service-account-credentials', '--controllers=*', '--leader-elect=false',
      '--bind-address=127.0.0.1', `--secure-port=${await freePort()}`, ...qps,
      // kwok renews a node's lease every 50 s (its lease lasts 200 s): a longer grace than the
      // default 40 s, or the fake nodes would go NotReady and be tainted.
      '--node-monitor-period=25s', '--node-monitor-grace-period=200s',
    ]);
    api.spawnComponent('kube-scheduler', [
      `--kubeconfig=${kubeconfig}`, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`,
      '--leader-elect=false', '--bind-address=127.0.0.1', `--secure-port=${await freePort()}`, ...qps,
    ]);
    const config = path.join(api.dir, 'kwok.yaml');
    writeFileSync(config, [
      'apiVersion: config.kwok.x-k8s.io/v1alpha1',
      'kind: KwokConfiguration',
      // A config file gets none of kwok's defaults. Without an address for nodes and pods, kwok
      // gives hostNetwork pods (the agent's) no IP and keeps "creating" them; these addresses
      // (RFC 2544's benchmark range) are only written into the objects' status, never dialled.
      'options:',
      '  cidr: 198.18.0.0/16',
      '  nodeIP: 198.19.0.1',
      '  nodeLeaseDurationSeconds: 200',
      '  nodeLeaseParallelism: 4',
      '  nodePlayStageParallelism: 4',
      '  podPlayStageParallelism: 4',
      '  podsOnNodeSyncParallelism: 1',
      readFileSync(path.join(api.bin, 'kwok-stages.yaml'), 'utf8'),
    ].join('\n'));
    api.spawnComponent('kwok', [
      `--kubeconfig=${kubeconfig}`, `--config=${config}`,
      '--manage-all-nodes=false', '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      `--server-address=127.0.0.1:${await freePort()}`,
    ]);
  }

  /** Creates the objects with `parallel` requests in flight. */
  async createAll(objects: KubeObject[], parallel = 16): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < objects.length) {
        const object = objects[next++]!;
        for (let attempt = 0; ; attempt++) {
          const res = await this.api.request('POST', collectionOf(object), object);
          if (res.status === 201 || res.status === 409) break;
          // The API server sheds load with 429; anything else is a bug of the test.
          if (res.status !== 429 || attempt > 20) throw new Error(`create ${object.kind} ${object.metadata.name}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  }

  async stop(): Promise<void> {
    await this.api.stop();
  }
}

function collectionOf(o: KubeObject): string {
  if (o.kind === 'Node') return '/api/v1/nodes';
  if (o.kind === 'Pod') return `/api/v1/namespaces/${o.metadata.namespace}/pods`;
  throw new Error(`createAll: ${o.kind} not supported`);
}

/** A fake node kwok manages, with the status the kubelet would publish. */
export function fakeNode(name: string, nodeInfo: { machineID: string; systemUUID: string }, taints: { key: string; value?: string; effect: string }[] = []): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, annotations: { 'kwok.x-k8s.io/node': 'fake' }, labels: { 'kubernetes.io/hostname': name, type: 'kwok' } },
    spec: { taints },
    status: {
      allocatable: { cpu: '32', memory: '256Gi', pods: '110' },
      capacity: { cpu: '32', memory: '256Gi', pods: '110' },
      nodeInfo: {
        ...nodeInfo, bootID: '', kernelVersion: '6.1.0', osImage: 'Debian GNU/Linux 12 (bookworm)', containerRuntimeVersion: 'kwok',
        kubeletVersion: 'fake', kubeProxyVersion: 'fake', operatingSystem: 'linux', architecture: 'amd64',
      },
    },
  };
}
