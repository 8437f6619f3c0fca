// The chart in a real cluster API: the real helm installs charts/nodeprep into the real
// kube-apiserver (every object through the server's own validation and admission, the optional
// ServiceMonitor, PrometheusRule and Certificate with CRDs loaded, the first two the Prometheus
// Operator's own), upgrades keep what was generated, the release's
// ServiceAccounts can do what the chart grants and nothing more, Pod Security admission treats the
// agent as the NOTES say, and helm uninstall leaves nothing of the release behind.
import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { chartDir, helmAsync, parseManifests, type K8sObject } from '../support/helm.js';
import { ApiServer, requireKube, type KubeObject } from '../support/kube-apiserver.js';

const PRIVILEGED = { 'pod-security.kubernetes.io/enforce': 'privileged' };
// Every optional object the default install leaves out, on.
const FULL = [
  '--set', 'aggregator.serviceMonitor.enabled=true',
  '--set', 'aggregator.networkPolicy.enabled=true',
  '--set-json', 'aggregator.networkPolicy.agentCIDRs=["10.0.0.0/8"]',
  '--set', 'aggregator.metrics.scraperServiceAccount.namespace=monitoring',
  '--set', 'aggregator.metrics.scraperServiceAccount.name=prometheus',
  '--set', 'aggregator.prometheusRule.enabled=true',
  '--set', 'aggregator.prometheusRule.additionalLabels.release=kube-prometheus-stack',
  '--set', 'aggregator.grafanaDashboard.enabled=true',
  '--set', 'aggregator.grafanaDashboard.namespace=monitoring',
];

async function run(): Promise<void> {
  t.setTimeout(240_000);
  const api = await ApiServer.start();
  t.teardown(() => api.stop());
  await api.installCrds('servicemonitors', 'prometheusrules', 'certificates');
  const helm = async (...args: string[]) => {
    const res = await helmAsync(args, api.adminKubeconfig);
    if (res.status !== 0) throw new Error(`helm ${args.slice(0, 3).join(' ')}: ${res.stderr}`);
    return res.stdout;
  };
  const secretData = async (namespace: string, name: string) => (await api.must('GET', `/api/v1/namespaces/${namespace}/secrets/${name}`)).data as Record<string, string>;

  await api.ensureNamespace('nodeprep', PRIVILEGED);
  await api.ensureNamespace('monitoring');
  const installed = await helm('install', 'nodeprep', chartDir, '-n', 'nodeprep', ...FULL);
  const manifest = parseManifests(await helm('get', 'manifest', 'nodeprep', '-n', 'nodeprep'));

  await t.test('helm install: every object accepted by the server and there', async (t) => {
    const kinds = new Set(manifest.map((o) => o.kind));
    for (const kind of ['DaemonSet', 'Deployment', 'Service', 'ConfigMap', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'Secret', 'ServiceMonitor', 'PrometheusRule', 'NetworkPolicy']) t.ok(kinds.has(kind), `renders a ${kind}`);
    for (const object of manifest) {
      const got = await api.request<KubeObject>('GET', objectPath(object));
      t.equal(got.status, 200, `${object.kind} ${object.metadata.name} exists`);
      // The upstream CRDs prune what they do not know: a field the operator would not see is lost here.
      if (object.apiVersion === 'monitoring.coreos.com/v1') t.same(got.body.spec, object.spec, `${object.kind} ${object.metadata.name}: the server kept every field`);
    }
    const dashboard = manifest.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'nodeprep-dashboard');
    t.equal(dashboard?.metadata.namespace, 'monitoring', 'the dashboard ConfigMap in the namespace chosen for it');
    t.match(installed, /pod-security\.kubernetes\.io\/enforce=privileged/, 'the NOTES say which Pod Security label the namespace needs');
  });

  await t.test('the release\'s ServiceAccounts can do what the chart grants, and nothing more', async (t) => {
    const can = async (user: string, attributes: Record<string, string>) => {
      const review = await api.must<{ status: { allowed: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
        apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview',
        spec: { user, groups: ['system:serviceaccounts', 'system:serviceaccounts:nodeprep', 'system:authenticated'], ...('nonResource' in attributes ? { nonResourceAttributes: { path: attributes.nonResource, verb: 'get' } } : { resourceAttributes: attributes }) },
      });
      return review.status.allowed;
    };
    const aggregator = 'system:serviceaccount:nodeprep:nodeprep-aggregator';
    const agent = 'system:serviceaccount:nodeprep:nodeprep-agent';
    const granted: Record<string, string>[] = [
      { verb: 'list', resource: 'nodes' }, { verb: 'watch', resource: 'nodes' }, { verb: 'get', resource: 'nodes' },
      { verb: 'list', resource: 'pods' }, { verb: 'get', resource: 'pods', namespace: 'nodeprep' },
      { verb: 'watch', group: 'apps', resource: 'daemonsets' }, { verb: 'list', group: 'apps', resource: 'deployments', namespace: 'illumio-system' },
      { verb: 'watch', group: 'crd.projectcalico.org', resource: 'felixconfigurations' }, { verb: 'list', group: 'operator.tigera.io', resource: 'installations' },
      { verb: 'watch', resource: 'configmaps', namespace: 'illumio-system', name: 'root-ca-config' }, { verb: 'list', resource: 'configmaps', name: 'calico-config' },
      { verb: 'create', group: 'authentication.k8s.io', resource: 'tokenreviews' }, { verb: 'create', group: 'authorization.k8s.io', resource: 'subjectaccessreviews' },
    ];
    // aggregator.publish: exactly the writes the outlets make.
    granted.push(
      { verb: 'create', group: 'openreports.io', resource: 'clusterreports' }, { verb: 'patch', group: 'openreports.io', resource: 'clusterreports', name: 'nodeprep' },
      { verb: 'get', group: 'openreports.io', resource: 'clusterreports', name: 'nodeprep' },
      { verb: 'create', group: 'wgpolicyk8s.io', resource: 'clusterpolicyreports' }, { verb: 'patch', group: 'wgpolicyk8s.io', resource: 'clusterpolicyreports', name: 'nodeprep' },
      { verb: 'create', resource: 'events', namespace: 'default' }, { verb: 'patch', resource: 'events', namespace: 'default' }, { verb: 'get', resource: 'events', namespace: 'default' },
      { verb: 'create', resource: 'events', namespace: 'nodeprep' }, { verb: 'patch', resource: 'events', namespace: 'nodeprep' },
      { verb: 'get', resource: 'configmaps', namespace: 'nodeprep', name: 'nodeprep-illumio-values' }, { verb: 'patch', resource: 'configmaps', namespace: 'nodeprep', name: 'nodeprep-illumio-values' },
    );
    for (const a of granted) t.ok(await can(aggregator, a), `the aggregator may ${a.verb} ${a.resource}${a.name ? ` ${a.name}` : ''}${a.namespace ? ` in ${a.namespace}` : ''}`);
    const denied: Record<string, string>[] = [
      { verb: 'get', resource: 'secrets', namespace: 'nodeprep' }, { verb: 'list', resource: 'secrets' },
      { verb: 'get', resource: 'configmaps', namespace: 'kube-system', name: 'kubeadm-config' }, { verb: 'list', resource: 'configmaps' },
      { verb: 'create', resource: 'pods', namespace: 'nodeprep' }, { verb: 'delete', resource: 'nodes' }, { verb: 'patch', resource: 'nodes' },
      { verb: 'update', group: 'apps', resource: 'daemonsets', namespace: 'kube-system' }, { verb: 'patch', group: 'crd.projectcalico.org', resource: 'felixconfigurations' },
      { verb: 'create', group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings' },
    ];
    denied.push(
      // The report kinds: another object, other verbs.
      { verb: 'patch', group: 'openreports.io', resource: 'clusterreports', name: 'kyverno-report' }, { verb: 'get', group: 'openreports.io', resource: 'clusterreports', name: 'other' },
      { verb: 'list', group: 'openreports.io', resource: 'clusterreports' }, { verb: 'delete', group: 'openreports.io', resource: 'clusterreports', name: 'nodeprep' },
      { verb: 'update', group: 'openreports.io', resource: 'clusterreports', name: 'nodeprep' }, { verb: 'create', group: 'openreports.io', resource: 'reports', namespace: 'nodeprep' },
      { verb: 'delete', group: 'wgpolicyk8s.io', resource: 'clusterpolicyreports', name: 'nodeprep' }, { verb: 'patch', group: 'wgpolicyk8s.io', resource: 'clusterpolicyreports', name: 'other' },
      // Events: only in default and its own namespace, never deleted or listed.
      { verb: 'create', resource: 'events', namespace: 'kube-system' }, { verb: 'delete', resource: 'events', namespace: 'default' }, { verb: 'list', resource: 'events', namespace: 'default' },
      { verb: 'create', group: 'events.k8s.io', resource: 'events', namespace: 'default' },
      // ConfigMaps: the values one by name, not created, not another.
      { verb: 'create', resource: 'configmaps', namespace: 'nodeprep' }, { verb: 'update', resource: 'configmaps', namespace: 'nodeprep', name: 'nodeprep-illumio-values' },
      { verb: 'delete', resource: 'configmaps', namespace: 'nodeprep', name: 'nodeprep-illumio-values' }, { verb: 'patch', resource: 'configmaps', namespace: 'nodeprep', name: 'nodeprep-aggregator' },
      { verb: 'patch', resource: 'configmaps', namespace: 'kube-system', name: 'nodeprep-illumio-values' },
    );
    for (const a of denied) t.notOk(await can(aggregator, a), `the aggregator may not ${a.verb} ${a.resource}${a.name ? ` ${a.name}` : ''}${a.namespace ? ` in ${a.namespace}` : ''}`);
    // Which report API is served: the discovery endpoints, open to every authenticated user by
    // the built-in system:discovery role, not by a rule of the chart.
    for (const path of ['/apis/openreports.io/v1alpha1', '/apis/wgpolicyk8s.io/v1alpha2']) t.ok(await can(aggregator, { nonResource: path }), `the aggregator may read ${path}`);
    for (const a of [...granted, ...denied]) t.notOk(await can(agent, a), `the agent may not ${a.verb} ${a.resource}`);
    t.ok(await can('system:serviceaccount:monitoring:prometheus', { nonResource: '/metrics' }), 'the scraper reads /metrics');
    t.ok(await can('system:serviceaccount:monitoring:prometheus', { nonResource: '/v1/findings' }), 'and the API');
    t.notOk(await can(agent, { nonResource: '/v1/findings' }), 'the agent does not read');
  });

  await t.test('the aggregator\'s whole grant, as the API server enumerates it: its writes exactly, no wildcards, no Secrets', async (t) => {
    // SelfSubjectRulesReview lists every rule that applies to the caller in a namespace (its
    // ClusterRoles' and that namespace's Roles'): a write the chart grants by mistake shows here
    // whatever its name, where a list of denied examples would miss it.
    const token = await api.serviceAccountToken('nodeprep', 'nodeprep-aggregator');
    // What system:basic-user grants every authenticated user: asking about oneself.
    const builtIn = new Set(['create authorization.k8s.io/selfsubjectaccessreviews', 'create authorization.k8s.io/selfsubjectrulesreviews', 'create authentication.k8s.io/selfsubjectreviews']);
    const everywhere = [
      'create authentication.k8s.io/tokenreviews', 'create authorization.k8s.io/subjectaccessreviews',
      'create openreports.io/clusterreports', 'patch openreports.io/clusterreports/nodeprep',
      'create wgpolicyk8s.io/clusterpolicyreports', 'patch wgpolicyk8s.io/clusterpolicyreports/nodeprep',
    ];
    const events = ['create /events', 'patch /events'];
    const expected: Record<string, string[]> = {
      'kube-system': everywhere,
      'illumio-system': everywhere,
      default: [...everywhere, ...events],
      nodeprep: [...everywhere, ...events, 'patch /configmaps/nodeprep-illumio-values'],
    };
    for (const [namespace, writes] of Object.entries(expected)) {
      const review = await api.must<{ status: { resourceRules: { verbs: string[]; apiGroups?: string[]; resources?: string[]; resourceNames?: string[] }[]; incomplete: boolean } }>('POST', '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews', {
        apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace },
      }, { token });
      t.notOk(review.status.incomplete, `${namespace}: the whole list`);
      const found = new Set<string>();
      for (const rule of review.status.resourceRules) {
        const parts = [...rule.verbs, ...(rule.apiGroups ?? []), ...(rule.resources ?? []), ...(rule.resourceNames ?? [])];
        t.notOk(parts.includes('*'), `${namespace}: no wildcard in ${JSON.stringify(rule)}`);
        t.notOk((rule.resources ?? []).includes('secrets'), `${namespace}: no Secrets`);
        for (const verb of rule.verbs.filter((v) => !['get', 'list', 'watch'].includes(v))) {
          for (const group of rule.apiGroups ?? []) {
            for (const resource of rule.resources ?? []) {
              const names = rule.resourceNames?.length ? rule.resourceNames : [undefined];
              for (const name of names) found.add(`${verb} ${group}/${resource}${name ? `/${name}` : ''}`);
            }
          }
        }
      }
      t.same([...found].filter((w) => !builtIn.has(w)).sort(), [...writes].sort(), `${namespace}: exactly these writes`);
    }
  });

  await t.test('Pod Security: restricted rejects the agent\'s pod, privileged admits it', async (t) => {
    const daemonSet = await api.must('GET', '/apis/apps/v1/namespaces/nodeprep/daemonsets/nodeprep-agent');
    for (const [namespace, level] of [['psa-restricted', 'restricted'], ['psa-privileged', 'privileged']] as const) {
      await api.ensureNamespace(namespace, { 'pod-security.kubernetes.io/enforce': level });
      await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'nodeprep-agent', namespace } });
    }
    const pod = (namespace: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'agent-dry-run', namespace, labels: daemonSet.spec.template.metadata.labels }, spec: daemonSet.spec.template.spec });
    const restricted = await api.request<{ message: string }>('POST', '/api/v1/namespaces/psa-restricted/pods?dryRun=All', pod('psa-restricted'));
    t.equal(restricted.status, 403, 'rejected');
    t.match(restricted.body.message, /violates PodSecurity "restricted:latest"/);
    t.match(restricted.body.message, /host namespaces \(hostNetwork=true\)/, 'for hostNetwork');
    t.match(restricted.body.message, /use restricted volume type "hostPath"/, 'hostPath volumes');
    t.match(restricted.body.message, /"NET_ADMIN", "NET_RAW"/, 'the two capabilities');
    const privileged = await api.request('POST', '/api/v1/namespaces/psa-privileged/pods?dryRun=All', pod('psa-privileged'));
    t.equal(privileged.status, 201, 'admitted');
  });

  await t.test('helm upgrade keeps the generated TLS CA and certificate', async (t) => {
    const before = await secretData('nodeprep', 'nodeprep-aggregator-tls');
    t.ok(before['ca.crt'] && before['tls.crt'] && before['tls.key'], 'a CA, a certificate and a key');
    await helm('upgrade', 'nodeprep', chartDir, '-n', 'nodeprep', ...FULL, '--set', 'aggregator.config.logLevel=debug');
    t.same(await secretData('nodeprep', 'nodeprep-aggregator-tls'), before, 'the same after an upgrade');
    const configMap = await api.must('GET', '/api/v1/namespaces/nodeprep/configmaps/nodeprep-aggregator');
    t.equal(configMap.data.LOG_LEVEL, 'debug', 'the upgrade did apply');
    // Names it must cover changed: a new certificate for them.
    await helm('upgrade', 'nodeprep', chartDir, '-n', 'nodeprep', ...FULL, '--set', 'aggregator.tls.clusterDomain=example.internal');
    const renamed = await secretData('nodeprep', 'nodeprep-aggregator-tls');
    t.not(renamed['tls.crt'], before['tls.crt'], 'another cluster domain: a new certificate');
    const cert = new X509Certificate(Buffer.from(renamed['tls.crt']!, 'base64'));
    t.match(cert.subjectAltName, /DNS:nodeprep-aggregator\.nodeprep\.svc\.example\.internal/);
    t.ok(cert.verify(new X509Certificate(Buffer.from(renamed['ca.crt']!, 'base64')).publicKey), 'signed by the CA the agents get');
  });

  await t.test('without the cluster view: a generated shared token, kept across upgrades', async (t) => {
    await api.ensureNamespace('edge', PRIVILEGED);
    await helm('install', 'edge', chartDir, '-n', 'edge', '-f', `${chartDir}/ci/cluster-view-off-values.yaml`);
    const first = await secretData('edge', 'edge-nodeprep-token');
    t.match(Buffer.from(first.token!, 'base64').toString(), /^[A-Za-z0-9]{48}$/, '48 random alphanumerics on first install');
    await helm('upgrade', 'edge', chartDir, '-n', 'edge', '-f', `${chartDir}/ci/cluster-view-off-values.yaml`, '--set', 'clusterName=edge-renamed');
    const after = await secretData('edge', 'edge-nodeprep-token');
    t.equal(after.token, first.token, 'the same token');
    t.equal(Buffer.from(after.tokens!, 'base64').toString(), `${Buffer.from(first.token!, 'base64').toString()} edge-renamed\n`, 'bound to the new cluster name');
    const rendered = parseManifests(await helm('get', 'manifest', 'edge', '-n', 'edge'));
    t.notOk(rendered.some((o) => o.kind === 'ClusterRole' && /aggregator/.test(o.metadata.name)), 'no RBAC for a view that is off');
    await helm('uninstall', 'edge', '-n', 'edge');
  });

  await t.test('OpenShift and cert-manager variants install', async (t) => {
    await api.ensureNamespace('ocp', PRIVILEGED);
    await helm('install', 'ocp', chartDir, '-n', 'ocp', '-f', `${chartDir}/ci/openshift-values.yaml`);
    const role = await api.request('GET', '/apis/rbac.authorization.k8s.io/v1/namespaces/ocp/roles/ocp-nodeprep-agent-scc');
    t.equal(role.status, 200, 'the SCC Role');
    await api.ensureNamespace('certs', PRIVILEGED);
    await helm('install', 'certs', chartDir, '-n', 'certs', '-f', `${chartDir}/ci/cert-manager-values.yaml`);
    const certificate = await api.request<KubeObject>('GET', '/apis/cert-manager.io/v1/namespaces/certs/certificates/certs-nodeprep-aggregator');
    t.equal(certificate.status, 200, 'the Certificate');
    t.ok((certificate.body.spec?.dnsNames as string[]).includes('certs-nodeprep-aggregator.certs.svc'), 'for the Service\'s names');
  });

  await t.test('the OpenReports CRDs on request: installed, established, kept on uninstall', async (t) => {
    await api.ensureNamespace('reports', PRIVILEGED);
    await helm('install', 'reports', chartDir, '-n', 'reports', '-f', `${chartDir}/ci/openreports-crds-values.yaml`);
    for (const name of ['clusterreports.openreports.io', 'reports.openreports.io']) {
      const crd = await api.must('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      t.ok(((crd.status?.conditions ?? []) as { type: string; status: string }[]).some((c) => c.type === 'Established' && c.status === 'True'), `${name} established`);
    }
    const discovery = await api.must<{ resources: { name: string }[] }>('GET', '/apis/openreports.io/v1alpha1');
    t.ok(discovery.resources.some((r) => r.name === 'clusterreports'), 'the aggregator\'s discovery finds ClusterReport');
    await helm('uninstall', 'reports', '-n', 'reports');
    t.equal((await api.request('GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterreports.openreports.io')).status, 200, 'kept: deleting it would delete every report of its kind');
  });

  await t.test('helm uninstall leaves nothing of the release behind', async (t) => {
    await helm('uninstall', 'nodeprep', '-n', 'nodeprep');
    for (const object of manifest) t.equal((await api.request('GET', objectPath(object))).status, 404, `${object.kind} ${object.metadata.name} gone`);
    const left = await api.must<{ items: unknown[] }>('GET', '/api/v1/namespaces/nodeprep/secrets');
    t.same(left.items, [], 'no Secret, helm\'s release records included');
    for (const path of ['/apis/rbac.authorization.k8s.io/v1/clusterroles', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings']) {
      const items = (await api.must<{ items: K8sObject[] }>('GET', `${path}?labelSelector=app.kubernetes.io/instance=nodeprep`)).items;
      t.same(items.map((i) => i.metadata.name), [], `no cluster-wide ${path.split('/').pop()}`);
    }
  });
}

/** The API path of a rendered object. */
function objectPath(o: K8sObject): string {
  const version = o.apiVersion;
  const base = version.includes('/') ? `/apis/${version}` : `/api/${version}`;
  const lower = o.kind.toLowerCase();
  const plural = lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : lower.endsWith('s') ? `${lower}es` : `${lower}s`;
  return o.metadata.namespace ? `${base}/namespaces/${o.metadata.namespace}/${plural}/${o.metadata.name}` : `${base}/${plural}/${o.metadata.name}`;
}

const why = requireKube();
if (why) t.plan(0, why);
else await run();
