// The real API server set up as the chart sets up access (identity, route access and contract
// tests): namespace nodeprep, the chart's ServiceAccounts, ClusterRoles and bindings as
// `helm template` renders them, a reader ServiceAccount bound to the chart's viewer role and an
// intruder with no role, and a kubeconfig with the aggregator's own ServiceAccount token.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { render } from './helm.js';
import { ApiServer, type KubeObject, type StartOptions } from './kube-apiserver.js';

export interface AccessCluster {
  api: ApiServer;
  // A scratch directory removed at the end (HOME for the aggregator, token files).
  dir: string;
  // The aggregator's kubeconfig (its ServiceAccount nodeprep/nodeprep-aggregator).
  kubeconfig: string;
  // Tokens of nodeprep/reader (bound to nodeprep-viewer) and nodeprep/intruder (no role).
  reader: string;
  intruder: string;
}

export async function accessCluster(t: Pick<Test, 'teardown'>, options: StartOptions = {}): Promise<AccessCluster> {
  const api = await ApiServer.start(options);
  t.teardown(() => api.stop());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await api.ensureNamespace('nodeprep');
  const rendered = render({ release: 'nodeprep', namespace: 'nodeprep' });
  for (const o of rendered.filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'ServiceAccount'].includes(o.kind))) await api.create(o as KubeObject);
  for (const name of ['reader', 'intruder']) await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: 'nodeprep' } });
  await api.create({
    apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'nodeprep-reader' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'nodeprep-viewer' },
    subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: 'nodeprep' }],
  });
  const kubeconfig = api.kubeconfigFor(await api.serviceAccountToken('nodeprep', 'nodeprep-aggregator'), 'aggregator');
  return {
    api,
    dir,
    kubeconfig,
    reader: await api.serviceAccountToken('nodeprep', 'reader'),
    intruder: await api.serviceAccountToken('nodeprep', 'intruder'),
  };
}
