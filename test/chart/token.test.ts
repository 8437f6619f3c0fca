// The token Secret shared by agent and aggregator: generated, or an existing one.
import t from 'tap';
import { chartDir, helmAsync, only, parseManifests, render, template, type K8sObject } from '../support/helm.js';
import { startFakeApiServer } from './fake-apiserver.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

// Follows a container's env var that names a file to the Secret volume and key behind it.
function secretBehind(pod: Any, c: Any, envName: string): { secretName: string; key: string } {
  const path: string = c.env.find((e: Any) => e.name === envName)?.value;
  const mount = (c.volumeMounts as Any[]).find((m) => path.startsWith(`${m.mountPath}/`));
  if (!mount) throw new Error(`${envName}=${path} is under no volume mount`);
  t.notOk(mount.subPath, `${envName}: no subPath, so a rotated token reaches the pod`);
  t.equal(mount.readOnly, true, `${envName}: mounted read-only`);
  const volume = (pod.volumes as Any[]).find((v) => v.name === mount.name);
  const file = path.slice(mount.mountPath.length + 1);
  const item = (volume.secret.items as Any[]).find((i) => i.path === file);
  return { secretName: volume.secret.secretName, key: item.key };
}

function wiring(objects: K8sObject[]) {
  const agentPod = only(objects, 'DaemonSet').spec.template.spec;
  const aggPod = only(objects, 'Deployment').spec.template.spec;
  return {
    agent: secretBehind(agentPod, agentPod.containers[0], 'AGGREGATOR_TOKEN_FILE'),
    aggregator: secretBehind(aggPod, aggPod.containers[0], 'AUTH_TOKEN_FILE'),
  };
}

t.test('default: one generated Secret, mounted by both', async (t) => {
  const objects = render();
  const secret = only(objects, 'Secret');
  t.equal(secret.metadata.name, 'nodeprep-token');
  t.same(Object.keys(secret.data), ['token']);
  const token = Buffer.from(secret.data.token, 'base64').toString();
  t.match(token, /^[A-Za-z0-9]{48}$/, '48 random alphanumerics');
  const w = wiring(objects);
  t.same(w.agent, { secretName: 'nodeprep-token', key: 'token' }, 'agent reads the token');
  t.same(w.aggregator, w.agent, 'aggregator checks the same token');
  const other = Buffer.from(only(render(), 'Secret').data.token, 'base64').toString();
  t.not(other, token, 'a fresh token where nothing can be looked up (helm template)');
});

t.test('auth.existingSecret: no Secret rendered, both use the given name and key', async (t) => {
  const objects = render({ valuesFiles: ['ci/existing-secret-values.yaml'] });
  t.notOk(objects.some((o) => o.kind === 'Secret'), 'no Secret');
  const w = wiring(objects);
  t.same(w.agent, { secretName: 'my-nodeprep-token', key: 'bearer' });
  t.same(w.aggregator, w.agent);
});

// helm's lookup only answers against a cluster: a fake API server plays the cluster, and
// `helm template --dry-run=server` renders as `helm upgrade` would.
t.test('the generated token is kept across upgrades', async (t) => {
  const secretPath = '/api/v1/namespaces/nodeprep/secrets/nodeprep-token';
  const stored = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: 'nodeprep-token',
      namespace: 'nodeprep',
      // What the first `helm install` left on it, so that helm may update it.
      labels: { 'app.kubernetes.io/managed-by': 'Helm' },
      annotations: { 'meta.helm.sh/release-name': 'nodeprep', 'meta.helm.sh/release-namespace': 'nodeprep' },
    },
    data: { token: Buffer.from('token-from-the-first-install').toString('base64') },
  };
  const args = ['template', 'nodeprep', chartDir, '-n', 'nodeprep', '--dry-run=server', '--disable-openapi-validation', '--show-only', 'templates/token-secret.yaml'];

  const upgrade = await startFakeApiServer({ [secretPath]: stored });
  t.teardown(() => upgrade.close());
  const res = await helmAsync(args, upgrade.kubeconfig);
  t.equal(res.status, 0, 'renders against the fake cluster', { stderr: res.stderr });
  t.ok(upgrade.requests.includes(`GET ${secretPath}`), 'looks the Secret up');
  const kept = only(parseManifests(res.stdout), 'Secret');
  t.equal(Buffer.from(kept.data.token, 'base64').toString(), 'token-from-the-first-install', 'keeps the stored token');

  const install = await startFakeApiServer({});
  t.teardown(() => install.close());
  const first = await helmAsync(args, install.kubeconfig);
  t.equal(first.status, 0, 'renders against an empty cluster', { stderr: first.stderr });
  const fresh = Buffer.from(only(parseManifests(first.stdout), 'Secret').data.token, 'base64').toString();
  t.match(fresh, /^[A-Za-z0-9]{48}$/, 'a new random token on first install');
});

t.test('agents without a local aggregator need the remote one\'s token', async (t) => {
  const res = template({ set: { 'aggregator.enabled': false, 'agent.aggregatorUrl': 'https://agg.example.com' } });
  t.not(res.status, 0, 'fails without auth.existingSecret');
  t.match(res.stderr, /aggregator\.enabled=false needs auth\.existingSecret/);
  const w = render({ valuesFiles: ['ci/aggregator-disabled-values.yaml'] });
  const pod = only(w, 'DaemonSet').spec.template.spec;
  t.same(secretBehind(pod, pod.containers[0], 'AGGREGATOR_TOKEN_FILE'), { secretName: 'nodeprep-central-token', key: 'token' });
});
