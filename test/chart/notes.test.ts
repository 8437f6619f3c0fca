// NOTES.txt: how to reach the API and read the alerts. `helm install --dry-run=client` prints
// the notes without a cluster.
import t from 'tap';
import { chartDir, helm } from '../support/helm.js';

function notes(args: string[] = []): string {
  const res = helm(['install', 'nodeprep', chartDir, '-n', 'nodeprep', '--dry-run=client', ...args]);
  if (res.status !== 0) throw new Error(res.stderr);
  const at = res.stdout.indexOf('NOTES:\n');
  if (at < 0) throw new Error('no NOTES in helm install output');
  return res.stdout.slice(at);
}

t.test('default install: Pod Security, readers\' token, https through a port-forward, alerts', async (t) => {
  const text = notes();
  t.match(text, 'kubectl label namespace nodeprep pod-security.kubernetes.io/enforce=privileged --overwrite', 'the Pod Security label');
  t.match(text, 'kubectl create clusterrolebinding nodeprep-reader --clusterrole=nodeprep-viewer --serviceaccount=nodeprep:nodeprep-reader');
  t.match(text, '--user=', 'or a person');
  t.match(text, 'TOKEN=$(kubectl create token nodeprep-reader -n nodeprep)');
  t.match(text, "kubectl -n nodeprep get secret nodeprep-aggregator-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d > nodeprep-ca.crt");
  t.match(text, 'kubectl -n nodeprep port-forward svc/nodeprep-aggregator 8080:8080');
  t.match(text, 'curl -s --cacert nodeprep-ca.crt --resolve nodeprep-aggregator.nodeprep.svc:8080:127.0.0.1 -H "Authorization: Bearer $TOKEN" "https://nodeprep-aggregator.nodeprep.svc:8080$1"');
  t.match(text, /api \/v1\/findings\n/);
  t.match(text, /kubectl -n nodeprep logs deploy\/nodeprep-aggregator[^\n]*finding \(raised\|resolved\)/);
  t.match(text, 'kubectl -n nodeprep rollout status daemonset/nodeprep-agent');
  t.match(text, 'with their own ServiceAccount');
  t.notMatch(text, 'OPENSHIFT');
  t.notMatch(text, 'hostPath type check failed" event lacks a\n  host path it reads (/etc/machine-id', 'directories mode: a missing machine ID is a finding, not a stuck pod');
});

// One line that a user pastes into a shell: the function must stand on one line.
t.test('the notes\' curl function sends the bearer token and trusts the CA', async (t) => {
  const text = notes();
  const fn = /^ {2}(api\(\) \{.*\})$/m.exec(text)?.[1];
  t.ok(fn, 'an api() shell function');
  t.match(fn as string, /curl -s --cacert nodeprep-ca\.crt/);
});

t.test('TLS off, no cluster view: plain http, no token, the shared token named', async (t) => {
  const text = notes(['-f', `${chartDir}/ci/cluster-view-off-values.yaml`, '--set', 'aggregator.tls.enabled=false']);
  t.match(text, 'api() { curl -s "http://127.0.0.1:8080$1"; }');
  t.notMatch(text, 'Authorization');
  t.notMatch(text, 'clusterrolebinding');
  t.match(text, 'The cluster view is off');
  t.match(text, 'shared token in Secret\n  nodeprep-token');
});

t.test('file mounts: the stuck pod and the restart after a fix', async (t) => {
  const text = notes(['-f', `${chartDir}/ci/file-mounts-values.yaml`]);
  t.match(text, 'hostPath type check failed');
  t.match(text, 'restart that node\'s agent pod');
});

t.test('agents only: no API instructions, says where reports go and with what', async (t) => {
  const text = notes(['-f', `${chartDir}/ci/aggregator-disabled-values.yaml`]);
  t.notMatch(text, 'port-forward');
  t.match(text, 'The agents report to https://nodeprep.example.com as cluster edge-eu-1, with the shared token in\n  Secret nodeprep-central-token (key token).');
});

t.test('OpenShift: the Pod Security label, with oc', async (t) => {
  const text = notes(['-f', `${chartDir}/ci/openshift-values.yaml`]);
  t.match(text, 'oc label namespace nodeprep pod-security.kubernetes.io/enforce=privileged');
  t.match(text, 'security.openshift.io/scc.podSecurityLabelSync=false');
  t.match(text, 'ServiceAccount\n  openshift-monitoring/prometheus-k8s may scrape them');
});

t.test('the central aggregator names its shared tokens', async (t) => {
  const text = notes(['-f', `${chartDir}/ci/shared-tokens-values.yaml`]);
  t.match(text, 'Agents of other clusters are accepted with the "<token> <cluster>" lines of Secret\n  nodeprep-shared-tokens (key tokens).');
});

t.test('the findings in the Kubernetes API: the report, Events and the values ConfigMap, each as published', async (t) => {
  const text = notes();
  t.match(text, 'IN THE KUBERNETES API');
  t.match(text, /\n {2}kubectl get clusterreports\n {2}kubectl describe clusterreport nodeprep\n/);
  t.match(text, 'aggregator.publish.report.installCrds=true', 'the CRD is not installed by default: says where it comes from');
  t.match(text, /\n {2}kubectl events --for node\/<node> -n default\n {2}kubectl -n nodeprep describe deployment nodeprep-aggregator\n/);
  t.match(text, "kubectl -n nodeprep get configmap nodeprep-illumio-values -o jsonpath='{.data.illumio-values\\.yaml}'");
  t.notMatch(notes(['--set', 'aggregator.publish.report.installCrds=true']), 'installCrds=true', 'CRDs installed: no hint');
  const noEvents = notes(['--set', 'aggregator.publish.events.enabled=false', '--set', 'aggregator.publish.report.enabled=false']);
  t.notMatch(noEvents, 'kubectl events');
  t.notMatch(noEvents, 'clusterreport');
  t.match(noEvents, 'nodeprep-illumio-values', 'the values ConfigMap still');
  t.notMatch(notes(['-f', `${chartDir}/ci/cluster-view-off-values.yaml`, '--set', 'aggregator.tls.enabled=false']), 'IN THE KUBERNETES API', 'no cluster view: nothing published');
});
