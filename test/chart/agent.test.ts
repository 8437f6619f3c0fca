// The agent DaemonSet: host access, identity, capabilities, tolerations, liveness.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chartDir, helm, only, parseManifests, render, template, type K8sObject } from '../support/helm.js';
import { scenarios } from './scenarios.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function agentOf(objects: K8sObject[]): { ds: K8sObject; pod: Any; c: Any } {
  const ds = only(objects, 'DaemonSet', '-agent');
  const pod = ds.spec.template.spec;
  return { ds, pod, c: pod.containers[0] };
}

function env(c: Any, name: string): Any {
  return (c.env as Any[]).find((e) => e.name === name);
}

// Each scenario is rendered once; the subtests below only read the result.
const renderedScenarios = new Map<string, K8sObject[]>();
const renderScenario = (name: string, opts: Parameters<typeof render>[0]) => {
  if (!renderedScenarios.has(name)) renderedScenarios.set(name, render(opts));
  return structuredClone(renderedScenarios.get(name) as K8sObject[]);
};

for (const { name, opts } of scenarios) {
  t.test(`${name}: agent pod`, async (t) => {
    const { ds, pod, c } = agentOf(renderScenario(name, opts));
    t.equal(pod.containers.length, 1, 'one container');
    t.equal(pod.hostNetwork, true, 'hostNetwork');
    t.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet', 'resolves Service names despite hostNetwork');
    t.notOk(pod.hostPID, 'no hostPID');
    t.equal(pod.automountServiceAccountToken, false, 'no API token');
    t.same(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } });

    const sc = c.securityContext;
    t.same(sc.capabilities.drop, ['ALL'], 'drops every capability');
    t.same([...sc.capabilities.add].sort(), ['NET_ADMIN', 'NET_RAW'], 'adds only NET_ADMIN and NET_RAW');
    t.equal(sc.privileged, false, 'not privileged');
    t.equal(sc.allowPrivilegeEscalation, false, 'no privilege escalation');
    t.equal(sc.readOnlyRootFilesystem, true, 'read-only root filesystem');

    t.same(env(c, 'NODE_NAME').valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } }, 'NODE_NAME from the downward API');
    t.equal(env(c, 'HOST_ROOT').value, '/host');
    t.equal(env(c, 'HEALTH_FILE').value, '/run/nodeprep/alive');
    t.match(env(c, 'AGGREGATOR_URL').value, /^https?:\/\//);

    t.ok(c.resources.requests.cpu && c.resources.requests.memory, 'has requests');
    t.ok(c.resources.limits.memory, 'has a memory limit');
  });

  t.test(`${name}: host mounts are read-only and never create host paths`, async (t) => {
    const { pod, c } = agentOf(renderScenario(name, opts));
    const volumes = new Map<string, Any>((pod.volumes as Any[]).map((v) => [v.name, v]));
    const hostMounts = (c.volumeMounts as Any[]).filter((m) => volumes.get(m.name)?.hostPath);
    const byHostPath = Object.fromEntries(
      hostMounts.map((m) => [volumes.get(m.name).hostPath.path, { type: volumes.get(m.name).hostPath.type, mountPath: m.mountPath }]),
    );
    const files = name.includes('file-mounts');
    t.same(byHostPath, files
      ? {
          '/etc/machine-id': { type: 'File', mountPath: '/host/etc/machine-id' },
          '/var/lib/dbus': { type: 'Directory', mountPath: '/host/var/lib/dbus' },
          '/opt': { type: 'Directory', mountPath: '/host/opt' },
        }
      : {
          '/etc': { type: 'Directory', mountPath: '/host/etc' },
          '/var/lib': { type: 'Directory', mountPath: '/host/var/lib' },
          '/opt': { type: 'Directory', mountPath: '/host/opt' },
        }, 'exactly the paths the agent reads, each under HOST_ROOT, with types that never create');
    for (const v of pod.volumes as Any[]) {
      if (!v.hostPath) continue;
      // Unset, DirectoryOrCreate and FileOrCreate all create a missing path on the host.
      t.ok(['File', 'Directory'].includes(v.hostPath.type), `${v.hostPath.path}: type ${v.hostPath.type} never creates`);
    }
    for (const m of hostMounts) {
      t.equal(m.readOnly, true, `${m.mountPath} is read-only`);
      t.notOk(m.subPath, `${m.mountPath} has no subPath`);
      t.notOk(m.mountPropagation, `${m.mountPath} propagates nothing (and recursiveReadOnly needs None)`);
      if (files) t.notOk(m.recursiveReadOnly, `${m.mountPath}: recursiveReadOnly Disabled leaves the field out`);
      else t.equal(m.recursiveReadOnly, 'IfPossible', `${m.mountPath}: read-only below its submounts where the node can`);
    }
    for (const c2 of [...pod.containers, ...(pod.initContainers ?? [])]) {
      for (const m of c2.volumeMounts as Any[]) {
        if (volumes.get(m.name)?.hostPath) t.equal(m.readOnly, true, `${c2.name}: ${m.mountPath} read-only`);
      }
    }
    const run = (c.volumeMounts as Any[]).find((m) => m.mountPath === '/run/nodeprep');
    t.ok(run && volumes.get(run.name)?.emptyDir, 'the health file lives in an emptyDir');
  });

  // The aggregator's TLS Secret holds its private key: an agent (root, on every node) gets its
  // CA certificate only, whatever the values.
  t.test(`${name}: the agent never mounts the aggregator's private key`, async (t) => {
    const objects = renderScenario(name, opts);
    const { pod } = agentOf(objects);
    const tlsSecretNames = new Set<string>(['nodeprep-aggregator-tls', 'nodeprep-central-tls']);
    const secretRefs: { secretName: string; items?: Any[] }[] = [];
    for (const v of pod.volumes as Any[]) {
      if (v.secret) secretRefs.push({ secretName: v.secret.secretName, items: v.secret.items });
      for (const src of v.projected?.sources ?? []) if (src.secret) secretRefs.push({ secretName: src.secret.name, items: src.secret.items });
    }
    for (const ref of secretRefs) {
      t.ok(ref.items && ref.items.length > 0, `Secret ${ref.secretName}: only listed keys are mounted`);
      for (const item of ref.items ?? []) t.not(item.key, 'tls.key', `Secret ${ref.secretName}: no tls.key`);
      if (tlsSecretNames.has(ref.secretName)) t.same(ref.items, [{ key: 'ca.crt', path: 'ca.crt' }], `${ref.secretName}: ca.crt alone`);
    }
  });
}

t.test('identity: a projected ServiceAccount token for audience nodeprep, no API token', async (t) => {
  const objects = render();
  const { pod, c } = agentOf(objects);
  t.equal(pod.automountServiceAccountToken, false, 'no Kubernetes API token');
  t.equal(pod.serviceAccountName, only(objects, 'ServiceAccount', '-agent').metadata.name, 'its own ServiceAccount');
  const file = env(c, 'AGGREGATOR_TOKEN_FILE').value as string;
  const mount = (c.volumeMounts as Any[]).find((m) => file.startsWith(`${m.mountPath}/`));
  t.ok(mount, 'AGGREGATOR_TOKEN_FILE is in a mounted volume');
  t.equal(mount.readOnly, true, 'mounted read-only');
  t.notOk(mount.subPath, 'no subPath: the kubelet\'s renewed token reaches the running agent');
  const volume = (pod.volumes as Any[]).find((v) => v.name === mount.name);
  t.same(volume.projected.sources, [{ serviceAccountToken: { audience: 'nodeprep', expirationSeconds: 3600, path: file.slice(mount.mountPath.length + 1) } }],
    'a projected serviceAccountToken, audience nodeprep, one hour');
  t.notOk(objects.some((o) => o.kind === 'Secret' && o.metadata.name.endsWith('-token')), 'no shared token Secret');

  const longer = agentOf(render({ set: { 'agent.tokenExpirationSeconds': 7200 } })).pod;
  t.equal(longer.volumes.find((v: Any) => v.projected).projected.sources[0].serviceAccountToken.expirationSeconds, 7200, 'expiry from agent.tokenExpirationSeconds');
});

t.test('the agents trust the aggregator\'s CA, and reach it over https', async (t) => {
  const { pod, c } = agentOf(render());
  t.equal(env(c, 'AGGREGATOR_URL').value, 'https://nodeprep-aggregator.nodeprep.svc:8080');
  const caFile = env(c, 'AGGREGATOR_CA_FILE').value as string;
  const mount = (c.volumeMounts as Any[]).find((m) => caFile.startsWith(`${m.mountPath}/`));
  t.equal(mount.readOnly, true);
  const volume = (pod.volumes as Any[]).find((v) => v.name === mount.name);
  t.same(volume.secret.items, [{ key: 'ca.crt', path: caFile.slice(mount.mountPath.length + 1) }], 'ca.crt of the TLS Secret, and nothing else');
  t.equal(volume.secret.secretName, 'nodeprep-aggregator-tls');

  const plain = agentOf(render({ valuesFiles: ['ci/tls-disabled-values.yaml'] })).c;
  t.equal(env(plain, 'AGGREGATOR_URL').value, 'http://nodeprep-aggregator.nodeprep.svc:8080', 'TLS off: http');
  t.notOk(env(plain, 'AGGREGATOR_CA_FILE'), 'TLS off: no CA file');

  const remote = agentOf(render({ valuesFiles: ['ci/aggregator-disabled-values.yaml'] }));
  t.equal(env(remote.c, 'AGGREGATOR_CA_FILE').value, '/etc/nodeprep/ca/ca.crt', 'remote aggregator: the CA from agent.aggregatorCA');
  t.ok((remote.pod.volumes as Any[]).some((v) => v.configMap?.name === 'nodeprep-aggregator-ca'), 'from the ConfigMap');
});

t.test('tolerations: every taint by default, the given ones when set', async (t) => {
  t.same(agentOf(render()).pod.tolerations, [{ operator: 'Exists' }]);
  const custom = agentOf(render({ valuesFiles: ['ci/custom-tolerations-values.yaml'] })).pod;
  t.same(custom.tolerations, [{ key: 'dedicated', operator: 'Equal', value: 'infra', effect: 'NoSchedule' }]);
  t.same(custom.nodeSelector, { 'kubernetes.io/os': 'linux' });
  t.equal(custom.priorityClassName, 'system-node-critical');
  t.same(env(custom.containers[0], 'NODE_OPTIONS'), { name: 'NODE_OPTIONS', value: '--max-old-space-size=64' }, 'extraEnv');
  t.equal(env(custom.containers[0], 'SAMPLE_INTERVAL').value, '7.5', 'fractional sample interval');
});

t.test('when the agent reads the rulesets: on a change by default, with a full read every 30 minutes', async (t) => {
  const { c } = agentOf(render());
  t.equal(env(c, 'READ_RULESETS').value, 'on-change');
  t.equal(env(c, 'FULL_READ_INTERVAL').value, '1800');
  const polling = agentOf(render({ set: { 'agent.readRulesets': 'every-sample', 'agent.fullReadIntervalSeconds': 600 } })).c;
  t.equal(env(polling, 'READ_RULESETS').value, 'every-sample');
  t.equal(env(polling, 'FULL_READ_INTERVAL').value, '600');
  const wrong = template({ set: { 'agent.readRulesets': 'sometimes' } });
  t.not(wrong.status, 0, 'a value the agent does not know is refused');
  t.match(wrong.stderr, /readRulesets/);
});

t.test('a host mount can be turned off, in either mode', async (t) => {
  const hostPaths = (set: Record<string, unknown>) =>
    (agentOf(render({ set })).pod.volumes as Any[]).filter((v) => v.hostPath).map((v) => v.hostPath.path).sort();
  t.same(hostPaths({ 'agent.hostMounts.dbus': false }), ['/etc', '/opt']);
  t.same(hostPaths({ 'agent.hostMounts.machineId': false, 'agent.hostMounts.opt': false }), ['/var/lib']);
  t.same(hostPaths({ 'agent.hostMounts.mode': 'files', 'agent.hostMounts.dbus': false }), ['/etc/machine-id', '/opt']);
});

// recursiveReadOnly is a Kubernetes 1.30 field: older API servers would reject the DaemonSet.
t.test('recursiveReadOnly only where the cluster knows it', async (t) => {
  const renderFor = (kubeVersion: string, extra: string[] = []) =>
    helm(['template', 'nodeprep', chartDir, '-n', 'nodeprep', '--kube-version', kubeVersion, '--show-only', 'templates/agent-daemonset.yaml', ...extra]);
  const mountsOf = (stdout: string) => (only(parseManifests(stdout), 'DaemonSet').spec.template.spec.containers[0].volumeMounts as Any[]).filter((m) => m.name.startsWith('host-'));

  const old = renderFor('1.29.4');
  t.equal(old.status, 0, 'renders for 1.29', { stderr: old.stderr });
  for (const m of mountsOf(old.stdout)) t.notOk('recursiveReadOnly' in m, `1.29: ${m.mountPath} without recursiveReadOnly`);
  const current = renderFor('1.30.0');
  for (const m of mountsOf(current.stdout)) t.equal(m.recursiveReadOnly, 'IfPossible', `1.30: ${m.mountPath} IfPossible`);

  const enabledOld = renderFor('1.29.4', ['--set', 'agent.hostMounts.recursiveReadOnly=Enabled']);
  t.not(enabledOld.status, 0, 'Enabled on 1.29 fails');
  t.match(enabledOld.stderr, /recursiveReadOnly=Enabled needs Kubernetes 1\.30/);
  const enabled = renderFor('1.33.0', ['--set', 'agent.hostMounts.recursiveReadOnly=Enabled']);
  for (const m of mountsOf(enabled.stdout)) t.equal(m.recursiveReadOnly, 'Enabled');
});

t.test('OpenShift: SCC binding, required-scc annotation, SELinux spc_t', async (t) => {
  const objects = render({ valuesFiles: ['ci/openshift-values.yaml'] });
  const { ds, c } = agentOf(objects);
  // The agent's SCC Role (the aggregator's publish Roles are rbac.test.ts's).
  const role = only(objects, 'Role', '-agent-scc');
  t.same(role.rules, [{ apiGroups: ['security.openshift.io'], resources: ['securitycontextconstraints'], resourceNames: ['privileged'], verbs: ['use'] }]);
  const rb = only(objects, 'RoleBinding', '-agent-scc');
  t.same(rb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
  t.same(rb.subjects, [{ kind: 'ServiceAccount', name: ds.spec.template.spec.serviceAccountName, namespace: 'nodeprep' }]);
  t.equal(ds.spec.template.metadata.annotations['openshift.io/required-scc'], 'privileged');
  t.same(c.securityContext.seLinuxOptions, { type: 'spc_t' });
  t.same(c.securityContext.capabilities.add, ['NET_ADMIN', 'NET_RAW'], 'still only the two capabilities');

  const plain = render();
  t.notOk(plain.some((o) => (o.kind === 'Role' || o.kind === 'RoleBinding') && o.metadata.name.endsWith('-scc')), 'no SCC binding without openshift.enabled');
  t.notOk(agentOf(plain).c.securityContext.seLinuxOptions, 'no SELinux override without openshift.enabled');
});

// The probe's shell command, run here against a real file: it must pass on a fresh health file
// and fail on a stale or missing one, or it would not mean anything.
t.test('the liveness probe fails when the last sample is too old', async (t) => {
  const probe = agentOf(render()).c.livenessProbe;
  t.notOk(probe.httpGet, 'exec, not a port');
  const [sh, flag, script] = probe.exec.command as string[];
  t.equal(sh, '/bin/sh');
  t.equal(flag, '-c');
  t.match(script, /\/run\/nodeprep\/alive/);
  const maxAge = Number(/-lt (\d+)/.exec(script as string)?.[1]);
  t.equal(maxAge, 4 * 15 + 30, 'stale after 4 sample intervals + 30 s');

  const dir = mkdtempSync(join(tmpdir(), 'nodeprep-liveness-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'alive');
  const runProbe = () => spawnSync('/bin/sh', ['-c', (script as string).replaceAll('/run/nodeprep/alive', file)]).status;

  t.not(runProbe(), 0, 'fails before the first sample (no file)');
  writeFileSync(file, '');
  t.equal(runProbe(), 0, 'passes right after a sample');
  const old = Date.now() / 1000 - (maxAge + 5);
  utimesSync(file, old, old);
  t.not(runProbe(), 0, 'fails when the last sample is older than the limit');

  const slow = agentOf(render({ set: { 'agent.sampleIntervalSeconds': 60 } })).c.livenessProbe.exec.command[2];
  t.match(slow, /-lt 270 /, 'the limit follows the sample interval');
});
