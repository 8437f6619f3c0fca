// The aggregator in-process against the real Kubernetes API server, as the chart's
// ServiceAccount (its rendered RBAC, publish roles included: a write the chart forgot fails the
// test), with the outlets' intervals shortened, reports sent through app.inject(), log lines kept,
// and kubectl (the real one, v1.33) for what an admin would type.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApp, createLogger, type AppConfig } from '../../aggregator/app.js';
import { loadClusterAccess } from '../../aggregator/cluster/api.js';
import { loadConfig } from '../../aggregator/config.js';
import type { PublishTuning } from '../../aggregator/publish/outlets.js';
import { appSpecificMachineId } from '../../protocol/machine-id.js';
import type { NodeReport } from '../../protocol/report.js';
import { kubectlBinary, render } from './helm.js';
import { ApiServer, type KubeObject } from './kube-apiserver.js';
import { buildReport } from './reports.js';

export const NAMESPACE = 'nodeprep';

// Short enough for a test, and the same mechanisms as production's defaults.
export const FAST: PublishTuning = {
  report: { minIntervalMs: 300, checkIntervalMs: 500, resyncMs: 1_000, debounceMs: 50, discoveryMs: 1_000 },
  values: { minIntervalMs: 300, checkIntervalMs: 500, resyncMs: 1_000, debounceMs: 50 },
  events: { timing: { retryDelayMs: 500 } },
};

// Two machine IDs: worker-1 has its own, worker-2 and its clone worker-3 share one.
export const IDS = { one: '1a2b3c4d5e6f40718293a4b5c6d7e8f1', two: '2b3c4d5e6f7041829304b5c6d7e8f9a2' };

/**
 * The API server with the chart's RBAC and three Nodes: worker-1, worker-2, and worker-3, a
 * clone of worker-2 (the kubelet's copy of its machine ID) that no agent reports for.
 */
export async function startCluster(t: { teardown: (fn: () => unknown) => void }): Promise<ApiServer> {
  const api = await ApiServer.start();
  t.teardown(() => api.stop());
  await api.ensureNamespace(NAMESPACE);
  await installChartRbac(api);
  await api.create(nodeObject('worker-1', IDS.one));
  await api.create(nodeObject('worker-2', IDS.two));
  await api.create(nodeObject('worker-3', IDS.two));
  return api;
}

/** A report as worker-N's agent would send it, collected now. */
export function agentReport(name: string, rawMachineId: string, calico: 'append' | 'insert'): NodeReport {
  return { ...buildReport({ name, machineId: appSpecificMachineId(rawMachineId)!, calico }), collectedAt: new Date().toISOString() };
}

export function nodeObject(name: string, machineID: string): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Node', metadata: { name },
    status: { nodeInfo: { machineID, systemUUID: `${machineID.slice(0, 8)}-0000-4000-8000-${machineID.slice(0, 12)}`, bootID: '', kernelVersion: '', osImage: '', containerRuntimeVersion: '', kubeletVersion: '', kubeProxyVersion: '', operatingSystem: 'linux', architecture: 'amd64' } },
  };
}

/** The chart's objects for the aggregator's identity and what it may do (ClusterRoles, Roles, bindings, the values ConfigMap). */
export async function installChartRbac(api: ApiServer, set: Record<string, unknown> = {}): Promise<KubeObject[]> {
  const rendered = render({ release: 'nodeprep', namespace: NAMESPACE, set });
  const wanted = rendered.filter(
    (o) => ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount'].includes(o.kind) || (o.kind === 'ConfigMap' && o.metadata.name.endsWith('-illumio-values')),
  );
  for (const o of wanted) await api.create(o as KubeObject);
  return wanted as KubeObject[];
}

export interface Harness {
  app: FastifyInstance;
  lines: Record<string, unknown>[];
  send: (report: NodeReport) => Promise<void>;
  metric: (pattern: RegExp) => Promise<number>;
  readToken: string;
  close: () => Promise<void>;
}

/** The aggregator as the chart's ServiceAccount, started (its outlets running). */
export async function startAggregator(api: ApiServer, options: { config?: Partial<AppConfig>; publish?: PublishTuning; env?: Record<string, string> } = {}): Promise<Harness> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-publish-'));
  const kubeconfig = api.kubeconfigFor(await api.serviceAccountToken(NAMESPACE, 'nodeprep-aggregator'), 'aggregator');
  const access = loadClusterAccess({ KUBECONFIG: kubeconfig, HOME: dir }, 'auto');
  if (!('api' in access)) throw new Error(access.off);
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('debug', new Writable({ write(chunk, _e, done) { lines.push(JSON.parse(String(chunk)) as Record<string, unknown>); done(); } }) as never);
  const config = loadConfig({
    NODE_NO_AGENT_GRACE_SECONDS: '1', VALUES_CONFIGMAP: `${NAMESPACE}/nodeprep-illumio-values`, AGGREGATOR_DEPLOYMENT: `${NAMESPACE}/nodeprep-aggregator`,
    ...options.env,
  });
  const app = await buildApp({ config: { ...config, ...options.config }, logger, cluster: access, publish: options.publish ?? FAST });
  await app.ready();
  const readToken = await readerToken(api);
  return {
    app,
    lines,
    send: async (report) => {
      const res = await app.inject({ method: 'POST', url: '/v1/reports', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(report) });
      if (res.statusCode !== 202) throw new Error(`report of ${report.node.name}: ${res.statusCode} ${res.body}`);
    },
    metric: async (pattern) => {
      const res = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${readToken}` } });
      const m = pattern.exec(res.body);
      if (!m) throw new Error(`no ${pattern} in /metrics (${res.statusCode})`);
      return Number(m[1]);
    },
    readToken,
    close: async () => {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A reader bound to the chart's viewer role, as an admin's Prometheus or curl would be. */
async function readerToken(api: ApiServer): Promise<string> {
  const name = 'publish-reader';
  if ((await api.request('GET', `/api/v1/namespaces/${NAMESPACE}/serviceaccounts/${name}`)).status === 404) {
    await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: NAMESPACE } });
    await api.create({
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'nodeprep-viewer' },
      subjects: [{ kind: 'ServiceAccount', name, namespace: NAMESPACE }],
    });
  }
  return api.serviceAccountToken(NAMESPACE, name);
}

/** The real kubectl, as the admin (or as the holder of `kubeconfig`). */
export function kubectl(api: ApiServer, args: string[], kubeconfig = api.adminKubeconfig): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(kubectlBinary(), ['--kubeconfig', kubeconfig, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: os.tmpdir() } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

