// The aggregator Deployment, Service, ConfigMap (its environment contract), ServiceMonitor and
// NetworkPolicy.
import t from 'tap';
import { createHash } from 'node:crypto';
import { only, render, template, type K8sObject } from '../support/helm.js';
import { scenarios } from './scenarios.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function aggregatorOf(objects: K8sObject[]): { deploy: K8sObject; pod: Any; c: Any } {
  const deploy = only(objects, 'Deployment', '-aggregator');
  const pod = deploy.spec.template.spec;
  return { deploy, pod, c: pod.containers[0] };
}

for (const { name, opts } of scenarios.filter((s) => !s.name.includes('aggregator-disabled'))) {
  t.test(`${name}: aggregator pod`, async (t) => {
    const objects = render(opts);
    const { deploy, pod, c } = aggregatorOf(objects);
    t.equal(deploy.spec.replicas, 1, 'one replica: state is in memory');
    t.equal(pod.securityContext.runAsNonRoot, true, 'runAsNonRoot');
    const uid = c.securityContext.runAsUser ?? pod.securityContext.runAsUser;
    if (uid !== undefined) t.not(uid, 0, 'uid is not 0');
    t.equal(c.securityContext.readOnlyRootFilesystem, true, 'read-only root filesystem');
    t.equal(c.securityContext.allowPrivilegeEscalation, false, 'no privilege escalation');
    t.equal(c.securityContext.privileged, false, 'not privileged');
    t.same(c.securityContext.capabilities, { drop: ['ALL'] }, 'drops every capability, adds none');
    t.notOk(pod.hostNetwork, 'no hostNetwork');
    t.notOk((pod.volumes ?? []).some((v: Any) => v.hostPath), 'no hostPath');
    const clusterView = !name.includes('cluster-view-off');
    t.equal(pod.automountServiceAccountToken, clusterView, clusterView ? 'an API token for the cluster view' : 'no API token without the cluster view');

    const tls = !name.includes('tls-disabled');
    const port = tls ? 'https' : 'http';
    const scheme = tls ? { scheme: 'HTTPS' } : {};
    t.same(c.livenessProbe.httpGet, { path: '/healthz', port, ...scheme }, `liveness over ${port}`);
    t.same(c.readinessProbe.httpGet, { path: '/readyz', port, ...scheme }, `readiness over ${port}`);
    t.same(c.ports, [{ name: port, containerPort: 8080, protocol: 'TCP' }]);

    const cm = only(objects, 'ConfigMap', '-aggregator');
    t.same(c.envFrom, [{ configMapRef: { name: cm.metadata.name } }], 'configuration from the ConfigMap');
    t.equal(cm.data.PORT, '8080');
    t.equal(cm.data.HOST, '0.0.0.0', 'listens on every address, not fastify\'s default localhost');

    const svc = only(objects, 'Service', '-aggregator');
    t.same(svc.spec.selector, deploy.spec.selector.matchLabels, 'the Service selects the aggregator pods');
    t.same(svc.spec.ports, [{ name: port, port: 8080, targetPort: port, protocol: 'TCP', ...(tls ? { appProtocol: 'https' } : {}) }]);
    const sa = only(objects, 'ServiceAccount', '-aggregator');
    t.equal(pod.serviceAccountName, sa.metadata.name);
  });
}

t.test('checksum/config is the hash of the ConfigMap and changes with it', async (t) => {
  const checksum = (set: Record<string, unknown>) => {
    const res = template({ set });
    t.equal(res.status, 0, 'renders');
    const source = res.stdout.split(/^---$/m).find((doc) => doc.includes('# Source: nodeprep/templates/aggregator-configmap.yaml'));
    const annotation = aggregatorOf(render({ set })).deploy.spec.template.metadata.annotations['checksum/config'];
    return { annotation, source };
  };
  const a = checksum({});
  t.match(a.annotation, /^[0-9a-f]{64}$/);
  // helm hashes the template's raw output; `helm template` prints it after a "# Source:" line,
  // minus the leading newline the template's first {{- if }} leaves.
  const body = (a.source as string).replace(/^\n?# Source: [^\n]*\n/, '');
  const candidates = [body, `\n${body}`].map((b) => createHash('sha256').update(b).digest('hex'));
  t.ok(candidates.includes(a.annotation), 'sha256 of the rendered ConfigMap', { annotation: a.annotation, candidates });
  t.not(checksum({ 'aggregator.config.logLevel': 'debug' }).annotation, a.annotation, 'changes with the config');
  t.equal(checksum({ 'agent.sampleIntervalSeconds': 30 }).annotation, a.annotation, 'ignores agent-only values');
});

t.test('OpenShift: the aggregator leaves uid and gid to restricted-v2', async (t) => {
  const { pod } = aggregatorOf(render({ valuesFiles: ['ci/openshift-values.yaml'] }));
  t.equal(pod.securityContext.runAsNonRoot, true);
  t.notOk('runAsUser' in pod.securityContext, 'no runAsUser');
  t.notOk('runAsGroup' in pod.securityContext, 'no runAsGroup');
  t.same(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
  const { pod: plain } = aggregatorOf(render());
  t.equal(plain.securityContext.runAsUser, 1000, 'uid 1000 (the image\'s node user) elsewhere');
});

// render.test.ts validates it against the CRD schema; this checks what it points at.
t.test('ServiceMonitor scrapes the aggregator Service\'s port over https, with a bearer token', async (t) => {
  t.notOk(render().some((o) => o.kind === 'ServiceMonitor'), 'off by default');
  const objects = render({ valuesFiles: ['ci/openshift-values.yaml'] });
  const sm = only(objects, 'ServiceMonitor');
  const svc = only(objects, 'Service', '-aggregator');
  t.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
  t.equal(sm.metadata.labels.release, 'prometheus', 'extra labels');
  t.same(sm.spec.selector.matchLabels, aggregatorOf(objects).deploy.spec.selector.matchLabels, 'selects by the aggregator labels');
  for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) t.equal(svc.metadata.labels[k], v, `Service has label ${k}`);
  t.same(sm.spec.namespaceSelector, { matchNames: ['nodeprep'] });
  t.equal(sm.spec.endpoints.length, 1);
  const [ep] = sm.spec.endpoints;
  t.ok(svc.spec.ports.some((p: Any) => p.name === ep.port), 'endpoint port is a named Service port');
  t.equal(ep.path, '/metrics');
  t.match(ep.interval, /^\d+(s|m)$/);
  t.equal(ep.scheme, 'https');
  t.same(ep.tlsConfig, { ca: { secret: { name: 'nodeprep-aggregator-tls', key: 'ca.crt' } }, serverName: 'nodeprep-aggregator.nodeprep.svc' },
    'trusts the aggregator\'s CA (never its key) for the Service name its certificate holds');
  t.equal(ep.bearerTokenFile, '/var/run/secrets/kubernetes.io/serviceaccount/token', 'Prometheus\'s own ServiceAccount token');
  t.notOk(ep.authorization);

  const withSecret = only(render({ valuesFiles: ['ci/cert-manager-values.yaml'] }), 'ServiceMonitor').spec.endpoints[0];
  t.same(withSecret.authorization, { type: 'Bearer', credentials: { name: 'nodeprep-scraper-token', key: 'token' } }, 'authorization from values');
  t.notOk(withSecret.bearerTokenFile, 'instead of bearerTokenFile');

  const plain = only(render({ set: { 'aggregator.serviceMonitor.enabled': true, 'aggregator.tls.enabled': false } }), 'ServiceMonitor').spec.endpoints[0];
  t.equal(plain.port, 'http');
  t.notOk(plain.scheme ?? plain.tlsConfig, 'TLS off: plain http');
});

t.test('NetworkPolicy lets in only the agents (node CIDRs) and the metrics scraper', async (t) => {
  t.notOk(render().some((o) => o.kind === 'NetworkPolicy'), 'off by default');
  const objects = render({ valuesFiles: ['ci/openshift-values.yaml'] });
  const np = only(objects, 'NetworkPolicy');
  const { deploy } = aggregatorOf(objects);
  t.same(np.spec.podSelector.matchLabels, deploy.spec.selector.matchLabels, 'selects the aggregator pods');
  t.same(np.spec.policyTypes, ['Ingress']);
  t.equal(np.spec.ingress.length, 2);
  const [agents, metrics] = np.spec.ingress;
  t.same(agents.from, [{ ipBlock: { cidr: '10.0.0.0/16' } }], 'agents by node CIDR (hostNetwork pods have node addresses)');
  t.same(metrics.from, [{
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
    podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } },
  }], 'the scraper');
  for (const rule of np.spec.ingress) t.same(rule.ports, [{ port: 'https', protocol: 'TCP' }], 'only the aggregator port');

  const res = template({ set: { 'aggregator.networkPolicy.enabled': true } });
  t.not(res.status, 0, 'enabled without agentCIDRs fails');
  t.match(res.stderr, /aggregator\.networkPolicy\.agentCIDRs/, 'and says what to set');
});

t.test('aggregator.enabled=false renders agents only', async (t) => {
  const objects = render({ valuesFiles: ['ci/aggregator-disabled-values.yaml'] });
  t.same(objects.map((o) => o.kind).sort(), ['DaemonSet', 'ServiceAccount'], 'no Deployment, Service, ConfigMap, Secret, RBAC');
  const c = only(objects, 'DaemonSet').spec.template.spec.containers[0];
  const env = Object.fromEntries((c.env as Any[]).map((e) => [e.name, e.value]));
  t.equal(env.AGGREGATOR_URL, 'https://nodeprep.example.com', 'agents point at the remote aggregator');
  t.equal(env.CLUSTER_NAME, 'edge-eu-1');
  t.equal(env.AGGREGATOR_CA_FILE, '/etc/nodeprep/ca/ca.crt');
  const res = template({ set: { 'aggregator.enabled': false, 'auth.existingSecret': 'x' } });
  t.not(res.status, 0, 'without agent.aggregatorUrl it fails');
  t.match(res.stderr, /needs agent\.aggregatorUrl/);
});

// What the aggregator reads from its environment (the contract with aggregator/config.ts; see
// contract.test.ts for the names), from values.
t.test('the aggregator\'s environment: cluster view, identity, TLS, Illumio', async (t) => {
  const envOf = (opts: Parameters<typeof render>[0]) => {
    const objects = render(opts);
    const { c } = aggregatorOf(objects);
    const cm = only(objects, 'ConfigMap', '-aggregator');
    return { ...cm.data, ...Object.fromEntries(((c.env ?? []) as Any[]).map((e) => [e.name, e.value])) } as Record<string, string>;
  };
  const d = envOf({});
  t.same(d, {
    PORT: '8080',
    HOST: '0.0.0.0',
    LOG_LEVEL: 'info',
    NODE_TTL_SECONDS: '180',
    CLUSTER_VIEW: 'auto',
    AGENT_SERVICE_ACCOUNT: 'nodeprep/nodeprep-agent',
    AGENT_TOKEN_AUDIENCE: 'nodeprep',
    CVEN_NAMESPACE: 'illumio-system',
    CVEN_DAEMONSET: 'illumio-ven',
    KUBELINK_DEPLOYMENT: 'illumio-kubelink',
    ROOT_CA_CONFIGMAP: 'illumio-system/root-ca-config',
    CALICO_CONFIGMAPS: 'calico-config',
    PUBLISH_REPORT: 'auto',
    PUBLISH_EVENTS: 'auto',
    AGGREGATOR_DEPLOYMENT: 'nodeprep/nodeprep-aggregator',
    VALUES_CONFIGMAP: 'nodeprep/nodeprep-illumio-values',
    TLS_CERT_FILE: '/etc/nodeprep/tls/tls.crt',
    TLS_KEY_FILE: '/etc/nodeprep/tls/tls.key',
  }, 'defaults: no CLUSTER_NAME, no AUTH_TOKEN_FILE, no optional Illumio inputs');

  const central = envOf({ valuesFiles: ['ci/shared-tokens-values.yaml'] });
  t.equal(central.CLUSTER_NAME, 'central');
  t.equal(central.AUTH_TOKEN_FILE, '/var/run/secrets/nodeprep/tokens', 'shared tokens of other clusters');
  t.equal(central.CVEN_NAMESPACE, 'illumio');
  t.equal(central.ROOT_CA_CONFIGMAP, 'illumio-config/pce-root-ca', 'its own namespace when set');
  t.equal(central.PCE_URL, 'pce.example.com:8443');
  t.equal(central.POLICY_SIZE, '1Gi');
  t.equal(central.WORKLOADS, '500');
  t.equal(central.CALICO_CONFIGMAPS, 'calico-config,calico-node-env');
  t.equal(envOf({ set: { 'illumio.workloads': 0 } }).WORKLOADS, '0', 'WORKLOADS=0 is a value, not unset');
  t.equal(envOf({ set: { 'illumio.namespace': 'illumio' } }).ROOT_CA_CONFIGMAP, 'illumio/root-ca-config', 'follows illumio.namespace');

  const off = envOf({ valuesFiles: ['ci/cluster-view-off-values.yaml'] });
  t.equal(off.CLUSTER_VIEW, 'off');
  t.notOk(off.AGENT_SERVICE_ACCOUNT, 'no ServiceAccount tokens to check without the API');
  t.equal(off.AUTH_TOKEN_FILE, '/var/run/secrets/nodeprep/tokens', 'the generated shared token instead');

  const plain = envOf({ valuesFiles: ['ci/tls-disabled-values.yaml'] });
  t.notOk(plain.TLS_CERT_FILE ?? plain.TLS_KEY_FILE, 'TLS off: no certificate');

  const sa = envOf({ set: { 'agent.serviceAccount.name': 'np-agent' }, release: 'prod', namespace: 'nodeprep' });
  t.equal(sa.AGENT_SERVICE_ACCOUNT, 'nodeprep/np-agent', 'the agent ServiceAccount\'s namespace/name');
  const noAgents = envOf({ set: { 'agent.enabled': false } });
  t.notOk(noAgents.AGENT_SERVICE_ACCOUNT, 'no agents in this release: none');
});

t.test('the aggregator mounts its certificate and key, and the shared tokens, read-only', async (t) => {
  const { pod, c } = aggregatorOf(render({ valuesFiles: ['ci/shared-tokens-values.yaml'] }));
  const fileSource = (envName: string) => {
    const path = (c.env as Any[]).find((e) => e.name === envName).value as string;
    const mount = (c.volumeMounts as Any[]).find((m) => path.startsWith(`${m.mountPath}/`));
    t.equal(mount.readOnly, true, `${envName}: read-only`);
    t.notOk(mount.subPath, `${envName}: no subPath, so renewed files reach the running aggregator`);
    const v = (pod.volumes as Any[]).find((x) => x.name === mount.name);
    return { secretName: v.secret.secretName, key: (v.secret.items as Any[]).find((i) => i.path === path.slice(mount.mountPath.length + 1)).key };
  };
  t.same(fileSource('TLS_CERT_FILE'), { secretName: 'nodeprep-central-tls', key: 'tls.crt' });
  t.same(fileSource('TLS_KEY_FILE'), { secretName: 'nodeprep-central-tls', key: 'tls.key' });
  t.same(fileSource('AUTH_TOKEN_FILE'), { secretName: 'nodeprep-shared-tokens', key: 'tokens' });
});
