// What the chart lets the aggregator, the readers and Prometheus do in the Kubernetes API: the
// cluster view's ClusterRole is exactly the reads it needs plus the two reviews, the publish
// roles exactly the writes the outlets make (the report, Events, the values ConfigMap), the
// viewer role exactly the aggregator's own paths, and nothing at all without the cluster view.
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

// The writes of aggregator.publish, in the chart's order: the report kinds (create cannot be
// narrowed to a name), Events in the release namespace and in default, the values ConfigMap.
const REPORT_RULES = [
  { apiGroups: ['openreports.io'], resources: ['clusterreports'], verbs: ['create'] },
  { apiGroups: ['openreports.io'], resources: ['clusterreports'], resourceNames: ['nodeprep'], verbs: ['get', 'patch'] },
  { apiGroups: ['wgpolicyk8s.io'], resources: ['clusterpolicyreports'], verbs: ['create'] },
  { apiGroups: ['wgpolicyk8s.io'], resources: ['clusterpolicyreports'], resourceNames: ['nodeprep'], verbs: ['get', 'patch'] },
];
const EVENTS_RULE = { apiGroups: [''], resources: ['events'], verbs: ['create', 'get', 'patch'] };
const valuesRule = (name: string) => ({ apiGroups: [''], resources: ['configmaps'], resourceNames: [name], verbs: ['get', 'patch'] });

/** Whether a write rule is one of the publish writes above (any release name). */
function isPublishWrite(rule: Any): boolean {
  const json = JSON.stringify(rule);
  return REPORT_RULES.some((r) => JSON.stringify(r) === json) || json === JSON.stringify(EVENTS_RULE) || (rule.resources?.[0] === 'configmaps' && /-illumio-values$/.test(rule.resourceNames?.[0] ?? '') && rule.resourceNames.length === 1 && JSON.stringify(rule.verbs) === '["get","patch"]');
}

// Whatever the values, no rule of any chart-rendered role may write or read Secrets.
for (const { name, opts } of scenarios) {
  t.test(`${name}: no write verbs but the reviews and the publish writes, no Secrets, no wildcards`, async (t) => {
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
        if (isPublishWrite(rule)) {
          t.ok(/-publish$|-node-events$/.test(role.metadata.name), `${id}: a publish write, in a publish role`);
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

t.test('publish: exactly the writes the outlets make, bound to the aggregator\'s ServiceAccount only', async (t) => {
  const objects = render();
  t.same(only(objects, 'ClusterRole', '-aggregator-publish').rules, REPORT_RULES, 'the report kinds: create, and get/patch on "nodeprep"');
  const role = only(objects, 'Role', '-aggregator-publish');
  t.equal(role.metadata.namespace, 'nodeprep');
  t.same(role.rules, [EVENTS_RULE, valuesRule('nodeprep-illumio-values')], 'Events on the Deployment, and the values ConfigMap by name');
  const nodeEvents = only(objects, 'Role', '-node-events');
  t.equal(nodeEvents.metadata.namespace, 'default', 'Events on Nodes go to default, as the kubelet\'s');
  t.same(nodeEvents.rules, [EVENTS_RULE]);
  const subjects = [{ kind: 'ServiceAccount', name: 'nodeprep-aggregator', namespace: 'nodeprep' }];
  for (const [kind, suffix] of [['ClusterRoleBinding', '-aggregator-publish'], ['RoleBinding', '-aggregator-publish'], ['RoleBinding', '-node-events']] as const) {
    const binding = only(objects, kind, suffix);
    t.same(binding.subjects, subjects, `${kind} ${binding.metadata.name}: the aggregator only`);
    t.equal(binding.roleRef.name, binding.metadata.name);
  }
  const configMap = only(objects, 'ConfigMap', '-illumio-values');
  t.notOk('data' in configMap, 'the values ConfigMap renders no data: helm upgrade leaves what the aggregator wrote');
  t.match(only(objects, 'ConfigMap', '-aggregator').data, { PUBLISH_REPORT: 'auto', PUBLISH_EVENTS: 'auto', VALUES_CONFIGMAP: 'nodeprep/nodeprep-illumio-values', AGGREGATOR_DEPLOYMENT: 'nodeprep/nodeprep-aggregator' });
});

t.test('publish: each part off takes its rules and its setting with it', async (t) => {
  const noReport = render({ set: { 'aggregator.publish.report.enabled': false } });
  t.notOk(noReport.some((o) => o.kind === 'ClusterRole' && o.metadata.name.endsWith('-publish')), 'no report: no ClusterRole');
  t.equal(only(noReport, 'ConfigMap', '-aggregator').data.PUBLISH_REPORT, 'off');
  const noEvents = render({ set: { 'aggregator.publish.events.enabled': false } });
  t.same(only(noEvents, 'Role', '-aggregator-publish').rules, [valuesRule('nodeprep-illumio-values')]);
  t.notOk(noEvents.some((o) => o.metadata.name.endsWith('-node-events')), 'no Role in default');
  t.equal(only(noEvents, 'ConfigMap', '-aggregator').data.PUBLISH_EVENTS, 'off');
  t.notOk('AGGREGATOR_DEPLOYMENT' in only(noEvents, 'ConfigMap', '-aggregator').data);
  const noValues = render({ set: { 'aggregator.publish.valuesConfigMap.enabled': false } });
  t.same(only(noValues, 'Role', '-aggregator-publish').rules, [EVENTS_RULE]);
  t.notOk(noValues.some((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-illumio-values')), 'no values ConfigMap');
  t.notOk('VALUES_CONFIGMAP' in only(noValues, 'ConfigMap', '-aggregator').data);
  const none = render({ set: { 'aggregator.publish.events.enabled': false, 'aggregator.publish.valuesConfigMap.enabled': false, 'aggregator.publish.report.enabled': false } });
  t.notOk(none.some((o) => /-publish$|-node-events$/.test(o.metadata.name)), 'all off: no publish roles');
  const inDefault = render({ namespace: 'default' });
  t.notOk(inDefault.some((o) => o.metadata.name.endsWith('-node-events')), 'released in default: its own Role covers the Nodes\' Events');
  t.same(only(inDefault, 'Role', '-aggregator-publish').rules[0], EVENTS_RULE);
  const viewOff = render({ valuesFiles: ['ci/cluster-view-off-values.yaml'] });
  t.notOk(viewOff.some((o) => /-publish$|-node-events$|-illumio-values$/.test(o.metadata.name)), 'no cluster view: nothing published, nothing granted');
  t.match(only(viewOff, 'ConfigMap', '-aggregator').data, { PUBLISH_REPORT: 'off', PUBLISH_EVENTS: 'off' });
});
