// helm lint --strict and helm template for the default values and every ci/ values file; every
// rendered object is validated against the Kubernetes API schema (kubernetes-models), and the
// custom resources against their CRD schemas (@kubernetes-models/prometheus-operator and
// @kubernetes-models/cert-manager). The OpenReports CRDs the chart can install are upstream's,
// byte for byte.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import t from 'tap';
import { ConfigMap, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1';
import { parse } from 'yaml';
import { FIXTURES } from '../support/fixtures.js';
import { chartDir, lint, render, type K8sObject } from '../support/helm.js';
import { ciFiles, scenarios } from './scenarios.js';

type Validator = (obj: K8sObject) => void;
const clusterScoped = new Set(['ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);

const validators: Record<string, Validator> = {
  'v1/ConfigMap': (o) => new ConfigMap(o as never).validate(),
  'v1/Secret': (o) => new Secret(o as never).validate(),
  'v1/Service': (o) => new Service(o as never).validate(),
  'v1/ServiceAccount': (o) => new ServiceAccount(o as never).validate(),
  'apps/v1/DaemonSet': (o) => new DaemonSet(o as never).validate(),
  'apps/v1/Deployment': (o) => new Deployment(o as never).validate(),
  'networking.k8s.io/v1/NetworkPolicy': (o) => new NetworkPolicy(o as never).validate(),
  'rbac.authorization.k8s.io/v1/Role': (o) => new Role(o as never).validate(),
  'rbac.authorization.k8s.io/v1/RoleBinding': (o) => new RoleBinding(o as never).validate(),
  'rbac.authorization.k8s.io/v1/ClusterRole': (o) => new ClusterRole(o as never).validate(),
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': (o) => new ClusterRoleBinding(o as never).validate(),
  'cert-manager.io/v1/Certificate': (o) => new Certificate(o as never).validate(),
  'monitoring.coreos.com/v1/ServiceMonitor': (o) => new ServiceMonitor(o as never).validate(),
  'monitoring.coreos.com/v1/PrometheusRule': (o) => new PrometheusRule(o as never).validate(),
  'apiextensions.k8s.io/v1/CustomResourceDefinition': (o) => new CustomResourceDefinition(o as never).validate(),
};

t.test('the ci/ folder has the value sets the issue asks for', async (t) => {
  t.same(ciFiles, [
    'aggregator-disabled-values.yaml',
    'cert-manager-values.yaml',
    'cluster-view-off-values.yaml',
    'custom-tolerations-values.yaml',
    'file-mounts-values.yaml',
    'monitoring-values.yaml',
    'openreports-crds-values.yaml',
    'openshift-values.yaml',
    'shared-tokens-values.yaml',
    'tls-disabled-values.yaml',
  ]);
});

for (const { name, opts } of scenarios) {
  t.test(name, async (t) => {
    const res = lint(opts);
    t.equal(res.status, 0, 'helm lint --strict passes', { stdout: res.stdout, stderr: res.stderr });
    t.match(res.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);

    const objects = render(opts);
    t.ok(objects.length > 0, 'renders objects');
    for (const obj of objects) {
      const key = `${obj.apiVersion}/${obj.kind}`;
      const id = `${obj.kind} ${obj.metadata?.name}`;
      if (clusterScoped.has(obj.kind)) t.notOk(obj.metadata.namespace, `${id} is cluster-scoped: no namespace`);
      // Events about Nodes go to namespace default, as the kubelet's do: their Role is there.
      else if (obj.metadata.name.endsWith('-node-events')) t.equal(obj.metadata.namespace, 'default', `${id} is in namespace default`);
      else t.equal(obj.metadata.namespace, 'nodeprep', `${id} is in the release namespace`);
      t.ok(obj.metadata.name.length <= 63, `${id}: name fits 63 characters`);
      const validate = validators[key];
      if (validate) {
        t.doesNotThrow(() => validate(obj), `${id} is valid against the ${key} schema`);
      } else {
        t.fail(`${id}: unexpected kind ${key}: add a validator`);
      }
    }
    const names = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    t.equal(new Set(names).size, names.length, 'no two objects share kind and name');
  });
}

t.test('the validation can fail: broken objects are rejected', async (t) => {
  const ds = render().find((o) => o.kind === 'DaemonSet') as K8sObject;
  const broken = structuredClone(ds);
  broken.spec.template.spec.hostNetwork = 'yes';
  delete broken.spec.template.spec.containers[0].name;
  t.throws(() => validators['apps/v1/DaemonSet']?.(broken), 'invalid DaemonSet throws');

  const role = render().find((o) => o.kind === 'ClusterRole') as K8sObject;
  const badRole = structuredClone(role);
  badRole.rules[0].verbs = 'get';
  t.throws(() => validators['rbac.authorization.k8s.io/v1/ClusterRole']?.(badRole), 'invalid ClusterRole throws');

  const cert = render({ valuesFiles: ['ci/cert-manager-values.yaml'] }).find((o) => o.kind === 'Certificate') as K8sObject;
  const badCert = structuredClone(cert);
  delete badCert.spec.secretName;
  badCert.spec.privateKey.algorithm = 'DSA';
  t.throws(() => validators['cert-manager.io/v1/Certificate']?.(badCert), 'invalid Certificate throws (the CRD schema is really applied)');

  const rule = render({ valuesFiles: ['ci/monitoring-values.yaml'] }).find((o) => o.kind === 'PrometheusRule') as K8sObject;
  const badRule = structuredClone(rule);
  badRule.spec.groups[0].rules[0].for = 'ten minutes';
  t.throws(() => validators['monitoring.coreos.com/v1/PrometheusRule']?.(badRule), 'invalid PrometheusRule throws');
});

t.test('the OpenReports CRDs: upstream\'s files in the chart, rendered with the release\'s labels and kept on uninstall', async (t) => {
  const files = ['openreports.io_clusterreports.yaml', 'openreports.io_reports.yaml'];
  for (const file of files) {
    t.equal(readFileSync(path.join(chartDir, 'files/crds', file), 'utf8'), readFileSync(path.join(FIXTURES, 'crds', file), 'utf8'), `files/crds/${file} is the vendored upstream file`);
  }
  t.notOk(render().some((o) => o.kind === 'CustomResourceDefinition'), 'not installed by default');
  const crds = render({ valuesFiles: ['ci/openreports-crds-values.yaml'] }).filter((o) => o.kind === 'CustomResourceDefinition');
  t.same(crds.map((c) => c.metadata.name), ['clusterreports.openreports.io', 'reports.openreports.io']);
  for (const [i, crd] of crds.entries()) {
    const upstream = parse(readFileSync(path.join(FIXTURES, 'crds', files[i]!), 'utf8')) as K8sObject;
    const { labels, annotations, ...metadata } = crd.metadata;
    const { annotations: upstreamAnnotations, ...upstreamMetadata } = upstream.metadata;
    t.same({ ...crd, metadata }, { ...upstream, metadata: upstreamMetadata }, `${crd.metadata.name}: upstream's definition`);
    t.match(labels, { 'app.kubernetes.io/instance': 'nodeprep', 'app.kubernetes.io/managed-by': 'Helm' });
    t.same(annotations, { ...upstreamAnnotations, 'helm.sh/resource-policy': 'keep' }, 'upstream\'s annotations, and kept on helm uninstall');
  }
});
