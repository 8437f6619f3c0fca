// ILLUMIO_UNDERSIZED: deployed C-VEN and Kubelink containers against the tier's resources.
import t from 'tap';
import { decideSizing } from '../../aggregator/illumio/sizing.js';
import { detectUndersized, type DeployedContainer, type Shortfall } from '../../aggregator/illumio/undersized.js';

const SMALL_CVEN: DeployedContainer = { name: 'illumio-ven', requests: { cpu: '500m', memory: '600Mi' }, limits: { cpu: '1', memory: '700Mi' } };

t.test('C-VEN at the small tier\'s values, held to large: every field named, have vs want', async (t) => {
  const findings = detectUndersized({ cven: { containers: [SMALL_CVEN] } }, 'large');
  t.equal(findings.length, 1);
  const f = findings[0]!;
  t.equal(f.code, 'ILLUMIO_UNDERSIZED');
  t.equal(f.severity, 'warning');
  t.same(f.evidence.shortfalls as Shortfall[], [
    { container: 'illumio-ven', component: 'cven', field: 'requests.cpu', have: '500m', want: '2' },
    { container: 'illumio-ven', component: 'cven', field: 'requests.memory', have: '600Mi', want: '6Gi' },
    { container: 'illumio-ven', component: 'cven', field: 'limits.cpu', have: '1', want: '3' },
    { container: 'illumio-ven', component: 'cven', field: 'limits.memory', have: '700Mi', want: '8Gi' },
  ]);
  t.match(f.message, 'C-VEN DaemonSet illumio-system/illumio-ven has resources below the large tier: container illumio-ven requests.cpu 500m < 2');
  t.match(f.remediation, 'Set cven.resources in illumio-values.yaml');
  t.match(f.remediation, 'helm upgrade illumio -f illumio-values.yaml');
  t.match(f.remediation, 'restarts the C-VEN on every node');
});

t.test('at or above the tier, in any unit: nothing', async (t) => {
  const cases: DeployedContainer[] = [
    SMALL_CVEN,
    { name: 'illumio-ven', requests: { cpu: '0.5', memory: '629145600' }, limits: { cpu: '1000m', memory: '0.68359375Gi' } },
    { name: 'illumio-ven', requests: { cpu: '4', memory: '1Gi' }, limits: { cpu: '8', memory: '2Gi' } },
    { name: 'illumio-ven', limits: { cpu: '1', memory: '700Mi' } }, // requests default to limits
    { name: 'illumio-ven', requests: { cpu: '0.5', memory: '600Mi' } }, // no limit is no ceiling
  ];
  for (const container of cases) t.same(detectUndersized({ cven: { containers: [container] } }, 'small'), [], JSON.stringify(container));
});

t.test('no request and no limit: "none" for requests, nothing for limits', async (t) => {
  const [f] = detectUndersized({ kubelink: { containers: [{ name: 'illumio-kubelink' }] } }, 'small');
  t.same(
    (f!.evidence.shortfalls as Shortfall[]).map((s) => [s.field, s.have, s.want]),
    [
      ['requests.cpu', 'none', '0.5'],
      ['requests.memory', 'none', '500Mi'],
    ],
  );
  t.match(f!.message, 'Kubelink Deployment illumio-system/illumio-kubelink');
});

t.test('Kubelink\'s storage container is held to Storage\'s row, not Kubelink\'s', async (t) => {
  // large: Kubelink limits cpu 4, memory 12Gi; Storage limits cpu 2, memory 12Gi.
  const kubelink = { name: 'illumio-kubelink', requests: { cpu: '3', memory: '10Gi' }, limits: { cpu: '2', memory: '12Gi' } };
  const storage = { name: 'illumio-storage', requests: { cpu: '1', memory: '10Gi' }, limits: { cpu: '2', memory: '12Gi' } };
  const [f] = detectUndersized({ kubelink: { namespace: 'ilo', name: 'kubelink', containers: [kubelink, storage] } }, 'large');
  t.same(f!.evidence.shortfalls, [{ container: 'illumio-kubelink', component: 'kubelink', field: 'limits.cpu', have: '2', want: '4' }]);
  t.match(f!.message, 'Kubelink Deployment ilo/kubelink');

  const [s] = detectUndersized({ kubelink: { containers: [{ ...storage, limits: { cpu: '1', memory: '12Gi' } }] } }, 'large');
  t.same((s!.evidence.shortfalls as Shortfall[]).map((x) => [x.component, x.field]), [['storage', 'limits.cpu']]);
  t.match(s!.remediation, 'kubelink.resources and storage.resources');
});

t.test('an unreadable quantity is skipped and named, never guessed', async (t) => {
  const [f] = detectUndersized({ cven: { containers: [{ ...SMALL_CVEN, requests: { cpu: 'lots', memory: '1Mi' } }] } }, 'small');
  t.same((f!.evidence.shortfalls as Shortfall[]).map((s) => s.field), ['requests.memory']);
  t.same(f!.evidence.unreadable, [{ container: 'illumio-ven', field: 'requests.cpu', value: 'lots' }]);
});

t.test('one finding per workload, stable id, the sizing answer in evidence', async (t) => {
  const answer = decideSizing({ nodes: { value: 25, source: 'Node objects in the API' } });
  const deployed = { cven: { containers: [SMALL_CVEN] }, kubelink: { containers: [{ name: 'illumio-kubelink' }] } };
  const first = detectUndersized(deployed, answer);
  t.same(first.map((f) => f.evidence.component), ['cven', 'kubelink']);
  t.equal(first[0]!.evidence.sizing, answer.reason);
  const smaller = detectUndersized(deployed, 'medium');
  t.same(smaller.map((f) => f.id), first.map((f) => f.id), 'the id names the workload, not the tier');
  t.same(detectUndersized({}, 'large'), [], 'nothing deployed, nothing undersized');
});
