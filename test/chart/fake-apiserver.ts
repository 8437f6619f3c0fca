// Just enough of a Kubernetes API server for `helm template --dry-run=server`: discovery for
// the kinds the chart renders, and GET of single objects from an in-memory map. It lets a test
// see what helm's `lookup` does against a cluster, without a cluster.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FakeApiServer {
  kubeconfig: string;
  requests: string[];
  close(): Promise<void>;
}

const resources = (list: [string, string][], namespaced = true) =>
  list.map(([name, kind]) => ({ name, singularName: kind.toLowerCase(), namespaced, kind, verbs: ['get', 'list', 'create', 'update'] }));

const rbac = 'rbac.authorization.k8s.io';

/** objects: path (e.g. /api/v1/namespaces/ns/secrets/name) → object served at it. */
export async function startFakeApiServer(objects: Record<string, unknown>): Promise<FakeApiServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    requests.push(`${req.method} ${path}`);
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (path === '/version') return send(200, { major: '1', minor: '30', gitVersion: 'v1.30.0' });
    if (path === '/api') return send(200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] });
    if (path === '/apis') {
      const group = (name: string) => {
        const gv = { groupVersion: `${name}/v1`, version: 'v1' };
        return { name, versions: [gv], preferredVersion: gv };
      };
      return send(200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [group('apps'), group(rbac)] });
    }
    if (path === '/api/v1') {
      return send(200, { kind: 'APIResourceList', groupVersion: 'v1', resources: resources([['secrets', 'Secret'], ['configmaps', 'ConfigMap'], ['services', 'Service'], ['serviceaccounts', 'ServiceAccount']]) });
    }
    if (path === '/apis/apps/v1') {
      return send(200, { kind: 'APIResourceList', groupVersion: 'apps/v1', resources: resources([['daemonsets', 'DaemonSet'], ['deployments', 'Deployment']]) });
    }
    if (path === `/apis/${rbac}/v1`) {
      return send(200, {
        kind: 'APIResourceList',
        groupVersion: `${rbac}/v1`,
        resources: [
          ...resources([['clusterroles', 'ClusterRole'], ['clusterrolebindings', 'ClusterRoleBinding']], false),
          ...resources([['roles', 'Role'], ['rolebindings', 'RoleBinding']]),
        ],
      });
    }
    if (req.method === 'GET' && path in objects) return send(200, objects[path]);
    return send(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fake API server: no port');
  const dir = mkdtempSync(join(tmpdir(), 'nodeprep-kubeconfig-'));
  const kubeconfig = join(dir, 'config');
  writeFileSync(kubeconfig, [
    'apiVersion: v1',
    'kind: Config',
    'clusters: [{name: fake, cluster: {server: "http://127.0.0.1:' + address.port + '"}}]',
    'users: [{name: fake, user: {token: fake}}]',
    'contexts: [{name: fake, context: {cluster: fake, user: fake}}]',
    'current-context: fake',
    '',
  ].join('\n'));
  return {
    kubeconfig,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
