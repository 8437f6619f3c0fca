// What the chart lets the aggregator, the readers and Prometheus do in the Kubernetes API: the
// cluster view's ClusterRole is exactly the reads it needs plus the two reviews, the viewer role
// is exactly the aggregator's own paths, and nothing at all without the cluster view.
import t from 'tap';
import { only, render, template, type K8sObject } from '../support/helm.js';
import { scenarios } from './scenarios.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const read = ['get', 'list', 'watch'];

/** The rules the issue asks for, in the chart's order. */
function expectedRules(configMaps: string[]): Any[] {
  return [
    { apiGroups: [''], resources: ['nodes'], verbs: read },
    { apiGroups: [''], resources: ['pods'], verbs: read },
    { apiGroups: ['apps'], resources: ['daemonsets', 'deployments'], verbs: read },
    { apiGroups: ['crd.projectcalico.org'], resources: ['felixconfigurations'], verbs: read },
    { apiGroups: ['operator.tigera.io'], resources: ['installations'], verbs: read },
    { apiGroups: [''], resources: ['configmaps'], resourceNames: configMaps, verbs: read },
    { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
    { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
  ];
}

function aggregatorRole(objects: K8sObject[]): K8sObject {
  return only(objects, 'ClusterRole', '-aggregator');
}

t.test('the cluster view\'s ClusterRole: exactly the reads it needs and the two reviews', async (t) => {
  const objects = render();
  const role = aggregatorRole(objects);
  t.equal(role.metadata.name, 'nodeprep-aggregator');
  t.same(role.rules, expectedRules(['root-ca-config', 'calico-config']));
  t.notOk(role.aggregationRule, 'not an aggregated role');

  const binding = only(objects, 'ClusterRoleBinding', '-aggregator');
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'nodeprep-aggregator' });
  const sa = only(objects, 'ServiceAccount', '-aggregator');
  t.same(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: 'nodeprep' }], 'bound to the aggregator\'s ServiceAccount only');
  const pod = only(objects, 'Deployment').spec.template.spec;
  t.equal(pod.serviceAccountName, sa.metadata.name, 'which the aggregator pod uses');
  t.equal(pod.automountServiceAccountToken, true, 'with its token mounted (in-cluster config)');
});

// Whatever the values, no rule of any chart-rendered role may write or read Secrets.
for (const { name, opts } of scenarios) {
  t.test(`${name}: no write verbs but the reviews, no Secrets, no wildcards`, async (t) => {
    const objects = render(opts);
    for (const role of objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')) {
      for (const rule of role.rules as Any[]) {
        const id = `${role.kind} ${role.metadata.name}: ${JSON.stringify(rule)}`;
        t.notOk([...(rule.verbs ?? []), ...(rule.resources ?? []), ...(rule.apiGroups ?? [])].includes('*'), `${id}: no wildcard`);
        t.notOk((rule.resources ?? []).includes('secrets'), `${id}: no Secrets`);
        const writes = (rule.verbs as string[]).filter((v) => !read.includes(v));
        if (writes.length === 0) continue;
        if (role.metadata.name.endsWith('-scc')) {
          t.same(rule, { apiGroups: ['security.openshift.io'], resources: ['securitycontextconstraints'], resourceNames: ['privileged'], verbs: ['use'] }, `${id}: OpenShift's SCC use`);
          continue;
        }
        t.same(writes, ['create'], `${id}: create is the only non-read verb`);
        t.ok(
          JSON.stringify(rule.resources) === '["tokenreviews"]' || JSON.stringify(rule.resources) === '["subjectaccessreviews"]',
          `${id}: and only on tokenreviews or subjectaccessreviews`,
        );
      }
    }
  });
}

t.test('ConfigMaps: only the root CA and Calico\'s, by name, from values', async (t) => {
  const role = aggregatorRole(render({ valuesFiles: ['ci/shared-tokens-values.yaml'] }));
  t.same(role.rules, expectedRules(['pce-root-ca', 'calico-config', 'calico-node-env']));
  const dup = aggregatorRole(render({ set: { 'illumio.rootCaConfigMap.name': 'calico-config' } }));
  t.same(dup.rules[5].resourceNames, ['calico-config'], 'a name listed twice is listed once');
  const none = aggregatorRole(render({ set: { 'aggregator.clusterView.calicoConfigMaps': [] } }));
  t.same(none.rules[5].resourceNames, ['root-ca-config'], 'no Calico ConfigMaps: only the root CA');
});

t.test('the viewer ClusterRole: GET on the aggregator\'s paths, nothing else', async (t) => {
  const viewer = only(render(), 'ClusterRole', '-viewer');
  t.equal(viewer.metadata.name, 'nodeprep-viewer');
  t.same(viewer.rules, [{ nonResourceURLs: ['/v1/*', '/metrics'], verbs: ['get'] }]);
  t.equal(only(render({ release: 'prod' }), 'ClusterRole', '-viewer').metadata.name, 'prod-nodeprep-viewer', '<fullname>-viewer');
  t.notOk(render().some((o) => o.kind === 'ClusterRoleBinding' && o.metadata.name.includes('viewer')), 'bound to nobody by default');
});

t.test('Prometheus\'s ServiceAccount can be bound to the viewer role', async (t) => {
  const objects = render({ valuesFiles: ['ci/openshift-values.yaml'] });
  const binding = only(objects, 'ClusterRoleBinding', '-viewer-scraper');
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'nodeprep-viewer' });
  t.same(binding.subjects, [{ kind: 'ServiceAccount', name: 'prometheus-k8s', namespace: 'openshift-monitoring' }]);
  const res = template({ set: { 'aggregator.metrics.scraperServiceAccount': { name: 'prometheus', namespace: '' } } });
  t.not(res.status, 0, 'a name without a namespace fails');
  t.match(res.stderr, /scraperServiceAccount\.name needs aggregator\.metrics\.scraperServiceAccount\.namespace/);
});

t.test('aggregator.clusterView.enabled=false renders no RBAC and turns the view off', async (t) => {
  const objects = render({ valuesFiles: ['ci/cluster-view-off-values.yaml'] });
  t.same(objects.filter((o) => /^(Cluster)?Role(Binding)?$/.test(o.kind)).map((o) => `${o.kind}/${o.metadata.name}`), [], 'no Role, ClusterRole or binding');
  const pod = only(objects, 'Deployment').spec.template.spec;
  t.equal(pod.automountServiceAccountToken, false, 'no API token in the pod');
  t.equal(only(objects, 'ConfigMap', '-aggregator').data.CLUSTER_VIEW, 'off');
  t.equal(only(render(), 'ConfigMap', '-aggregator').data.CLUSTER_VIEW, 'auto', 'auto by default');
  const openshift = render({ valuesFiles: ['ci/openshift-values.yaml'], set: { 'aggregator.clusterView.enabled': false, clusterName: 'ocp' } });
  t.same(openshift.filter((o) => /Role/.test(o.kind)).map((o) => `${o.kind}/${o.metadata.name}`), ['Role/nodeprep-agent-scc', 'RoleBinding/nodeprep-agent-scc'], 'OpenShift: only the agent\'s SCC binding');
});

t.test('no RBAC when the aggregator is not installed', async (t) => {
  const objects = render({ valuesFiles: ['ci/aggregator-disabled-values.yaml'] });
  t.notOk(objects.some((o) => /Role/.test(o.kind)));
});

t.test('the ClusterRole is never bound to a namespace\'s default ServiceAccount', async (t) => {
  const res = template({ set: { 'aggregator.serviceAccount.create': false } });
  t.not(res.status, 0, 'serviceAccount.create=false without a name fails');
  t.match(res.stderr, /aggregator\.serviceAccount\.create=false needs aggregator\.serviceAccount\.name/);
  const named = render({ set: { 'aggregator.serviceAccount.create': false, 'aggregator.serviceAccount.name': 'np' } });
  t.same(only(named, 'ClusterRoleBinding', '-aggregator').subjects, [{ kind: 'ServiceAccount', name: 'np', namespace: 'nodeprep' }]);
  const off = template({ set: { 'aggregator.serviceAccount.create': false, 'aggregator.clusterView.enabled': false, clusterName: 'lab' } });
  t.equal(off.status, 0, 'without the cluster view there is nothing to bind', { stderr: off.stderr });
});
