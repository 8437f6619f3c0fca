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

t.test('default install: API, alerts, agents', async (t) => {
  const text = notes();
  t.match(text, 'kubectl -n nodeprep port-forward svc/nodeprep-aggregator 8080:8080');
  t.match(text, /curl -s [^\n]*http:\/\/127\.0\.0\.1:8080\/v1\/findings/);
  t.match(text, /kubectl -n nodeprep logs deploy\/nodeprep-aggregator[^\n]*finding \(raised\|resolved\)/);
  t.match(text, 'kubectl -n nodeprep rollout status daemonset/nodeprep-agent');
  t.notMatch(text, 'OPENSHIFT');
});

t.test('agents only: no API instructions, says where reports go', async (t) => {
  const text = notes(['-f', `${chartDir}/ci/aggregator-disabled-values.yaml`]);
  t.notMatch(text, 'port-forward');
  t.match(text, 'The agents report to https://nodeprep.example.com.');
});

t.test('OpenShift: the Pod Security label', async (t) => {
  const text = notes(['-f', `${chartDir}/ci/openshift-values.yaml`]);
  t.match(text, 'pod-security.kubernetes.io/enforce=privileged');
  t.match(text, 'security.openshift.io/scc.podSecurityLabelSync=false');
});
