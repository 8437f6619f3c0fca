// Who may send reports: by default the agents' own ServiceAccount tokens (no Secret at all);
// shared tokens for agents that report to another cluster's aggregator and for the aggregator
// that receives them; a generated shared token when the aggregator has no cluster view.
import t from 'tap';
import { only, render, template, type K8sObject } from '../support/helm.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

// Follows a container's env var that names a file to the volume and source behind it.
function sourceBehind(pod: Any, c: Any, envName: string): { secretName: string; key: string } | { projected: Any } | undefined {
  const path: string | undefined = ((c.env ?? []) as Any[]).find((e: Any) => e.name === envName)?.value;
  if (!path) return undefined;
  const mount = (c.volumeMounts as Any[]).find((m) => path.startsWith(`${m.mountPath}/`));
  if (!mount) throw new Error(`${envName}=${path} is under no volume mount`);
  t.notOk(mount.subPath, `${envName}: no subPath, so a renewed token reaches the pod`);
  t.equal(mount.readOnly, true, `${envName}: mounted read-only`);
  const volume = (pod.volumes as Any[]).find((v) => v.name === mount.name);
  const file = path.slice(mount.mountPath.length + 1);
  if (volume.projected) return { projected: (volume.projected.sources as Any[]).find((s) => s.serviceAccountToken?.path === file) };
  const item = (volume.secret.items as Any[]).find((i) => i.path === file);
  return { secretName: volume.secret.secretName, key: item.key };
}

function wiring(objects: K8sObject[]) {
  const agentPod = objects.find((o) => o.kind === 'DaemonSet')?.spec.template.spec;
  const aggPod = objects.find((o) => o.kind === 'Deployment')?.spec.template.spec;
  return {
    agent: agentPod && sourceBehind(agentPod, agentPod.containers[0], 'AGGREGATOR_TOKEN_FILE'),
    aggregator: aggPod && sourceBehind(aggPod, aggPod.containers[0], 'AUTH_TOKEN_FILE'),
  };
}

const secrets = (objects: K8sObject[]) => objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name);

t.test('default: ServiceAccount tokens, no shared token anywhere', async (t) => {
  const objects = render();
  t.same(secrets(objects), ['nodeprep-aggregator-tls'], 'no token Secret (only the TLS one)');
  t.same(wiring(objects), {
    agent: { projected: { serviceAccountToken: { audience: 'nodeprep', expirationSeconds: 3600, path: 'token' } } },
    aggregator: undefined,
  }, 'the agent sends its projected token; the aggregator has no token file');
  const cm = only(objects, 'ConfigMap', '-aggregator').data;
  t.equal(cm.AGENT_SERVICE_ACCOUNT, 'nodeprep/nodeprep-agent', 'the aggregator knows whose tokens to accept');
  t.equal(cm.AGENT_TOKEN_AUDIENCE, 'nodeprep', 'and for which audience');
});

t.test('the central aggregator: shared tokens of other clusters, its own agents unchanged', async (t) => {
  const objects = render({ valuesFiles: ['ci/shared-tokens-values.yaml'] });
  t.same(secrets(objects), [], 'the chart creates no Secret');
  const w = wiring(objects);
  t.same(w.aggregator, { secretName: 'nodeprep-shared-tokens', key: 'tokens' });
  t.ok(w.agent && 'projected' in w.agent, 'this cluster\'s agents still use ServiceAccount tokens');
});

t.test('agents of another cluster: the shared token that aggregator expects', async (t) => {
  const objects = render({ valuesFiles: ['ci/aggregator-disabled-values.yaml'] });
  t.same(wiring(objects).agent, { secretName: 'nodeprep-central-token', key: 'token' });
  const pod = only(objects, 'DaemonSet').spec.template.spec;
  t.notOk((pod.volumes as Any[]).some((v) => v.projected), 'no projected token they could not use');
  t.equal(pod.automountServiceAccountToken, false);
  const key = render({ valuesFiles: ['ci/aggregator-disabled-values.yaml'], set: { 'auth.existingSecretKey': 'bearer' } });
  t.same(wiring(key).agent, { secretName: 'nodeprep-central-token', key: 'bearer' }, 'auth.existingSecretKey');
});

t.test('a remote aggregator needs a cluster name and a token', async (t) => {
  const base = { 'aggregator.enabled': false, 'agent.aggregatorUrl': 'https://agg.example.com' };
  const noName = template({ set: { ...base, 'auth.existingSecret': 'tok' } });
  t.not(noName.status, 0, 'no clusterName: fails');
  t.match(noName.stderr, /agent\.aggregatorUrl needs clusterName/);
  const noToken = template({ set: { ...base, clusterName: 'edge' } });
  t.not(noToken.status, 0, 'no auth.existingSecret: fails');
  t.match(noToken.stderr, /agent\.aggregatorUrl needs auth\.existingSecret/);
  const both = template({ set: { 'agent.aggregatorUrl': 'https://agg.example.com', 'auth.existingSecret': 'tok' } });
  t.not(both.status, 0, 'also with a local aggregator installed');
  t.match(both.stderr, /needs clusterName/);
});

t.test('auth.existingSecret for this release\'s own agents: a clear failure', async (t) => {
  const res = template({ set: { 'auth.existingSecret': 'my-nodeprep-token' } });
  t.not(res.status, 0);
  t.match(res.stderr, /auth\.existingSecret is only for agents that report to another aggregator/);
  t.match(res.stderr, /authenticate with their own ServiceAccount tokens/);
  const kept = render({ set: { 'auth.existingSecret': 'local', 'auth.sharedTokens.existingSecret': 'all-tokens' } });
  t.same(wiring(kept), { agent: { secretName: 'local', key: 'token' }, aggregator: { secretName: 'all-tokens', key: 'tokens' } },
    'with auth.sharedTokens listing it, a shared token is still possible');
});

t.test('no cluster view: a generated token, bound to clusterName', async (t) => {
  const objects = render({ valuesFiles: ['ci/cluster-view-off-values.yaml'] });
  const secret = only(objects, 'Secret', '-token');
  t.equal(secret.metadata.name, 'nodeprep-token');
  t.same(Object.keys(secret.data).sort(), ['token', 'tokens']);
  const token = Buffer.from(secret.data.token, 'base64').toString();
  t.match(token, /^[A-Za-z0-9]{48}$/, '48 random alphanumerics');
  t.equal(Buffer.from(secret.data.tokens, 'base64').toString(), `${token} lab\n`, 'the aggregator\'s file: "<token> <cluster>"');
  t.same(wiring(objects), {
    agent: { secretName: 'nodeprep-token', key: 'token' },
    aggregator: { secretName: 'nodeprep-token', key: 'tokens' },
  });

  const noName = template({ set: { 'aggregator.clusterView.enabled': false } });
  t.not(noName.status, 0, 'without clusterName it fails');
  t.match(noName.stderr, /clusterView\.enabled=false needs clusterName/);
  const withShared = template({ valuesFiles: ['ci/cluster-view-off-values.yaml'], set: { 'auth.sharedTokens.existingSecret': 'x' } });
  t.not(withShared.status, 0, 'with shared tokens the generated one cannot be added');
  t.match(withShared.stderr, /Set auth\.existingSecret/);
});

// Kept across upgrades: test/chart/install.test.ts, with the real helm against the real API server.

t.test('the agent ServiceAccount is never the namespace\'s default one', async (t) => {
  const res = template({ set: { 'agent.serviceAccount.create': false } });
  t.not(res.status, 0);
  t.match(res.stderr, /agent\.serviceAccount\.create=false needs agent\.serviceAccount\.name/);
  const named = render({ set: { 'agent.serviceAccount.create': false, 'agent.serviceAccount.name': 'node-agent' } });
  t.equal(only(named, 'ConfigMap', '-aggregator').data.AGENT_SERVICE_ACCOUNT, 'nodeprep/node-agent');
  t.equal(only(named, 'DaemonSet').spec.template.spec.serviceAccountName, 'node-agent');
});
