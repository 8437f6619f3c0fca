// The agent DaemonSet: host access, capabilities, tolerations, liveness.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { only, render, type K8sObject } from '../support/helm.js';
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

for (const { name, opts } of scenarios) {
  t.test(`${name}: agent pod`, async (t) => {
    const { ds, pod, c } = agentOf(render(opts));
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
    const { pod, c } = agentOf(render(opts));
    const volumes = new Map<string, Any>((pod.volumes as Any[]).map((v) => [v.name, v]));
    const hostMounts = (c.volumeMounts as Any[]).filter((m) => volumes.get(m.name)?.hostPath);
    const byHostPath = Object.fromEntries(
      hostMounts.map((m) => [volumes.get(m.name).hostPath.path, { type: volumes.get(m.name).hostPath.type, mountPath: m.mountPath }]),
    );
    t.same(byHostPath, {
      '/etc/machine-id': { type: 'File', mountPath: '/host/etc/machine-id' },
      '/var/lib/dbus': { type: 'Directory', mountPath: '/host/var/lib/dbus' },
      '/opt': { type: 'Directory', mountPath: '/host/opt' },
    }, 'exactly the paths the agent reads, each under HOST_ROOT, with types that never create');
    for (const m of hostMounts) {
      t.equal(m.readOnly, true, `${m.mountPath} is read-only`);
      t.notOk(m.subPath, `${m.mountPath} has no subPath`);
      t.not(m.mountPropagation, 'Bidirectional', `${m.mountPath} propagates nothing to the host`);
    }
    for (const c2 of [...pod.containers, ...(pod.initContainers ?? [])]) {
      for (const m of c2.volumeMounts as Any[]) {
        if (volumes.get(m.name)?.hostPath) t.equal(m.readOnly, true, `${c2.name}: ${m.mountPath} read-only`);
      }
    }
    const run = (c.volumeMounts as Any[]).find((m) => m.mountPath === '/run/nodeprep');
    t.ok(run && volumes.get(run.name)?.emptyDir, 'the health file lives in an emptyDir');
  });
}

t.test('tolerations: every taint by default, the given ones when set', async (t) => {
  t.same(agentOf(render()).pod.tolerations, [{ operator: 'Exists' }]);
  const custom = agentOf(render({ valuesFiles: ['ci/custom-tolerations-values.yaml'] })).pod;
  t.same(custom.tolerations, [{ key: 'dedicated', operator: 'Equal', value: 'infra', effect: 'NoSchedule' }]);
  t.same(custom.nodeSelector, { 'kubernetes.io/os': 'linux' });
  t.equal(custom.priorityClassName, 'system-node-critical');
  t.same(env(custom.containers[0], 'NODE_OPTIONS'), { name: 'NODE_OPTIONS', value: '--max-old-space-size=64' }, 'extraEnv');
  t.equal(env(custom.containers[0], 'SAMPLE_INTERVAL').value, '7.5', 'fractional sample interval');
});

t.test('a host mount can be turned off for node images without that path', async (t) => {
  const { pod } = agentOf(render({ set: { 'agent.hostMounts.dbus': false } }));
  const paths = (pod.volumes as Any[]).filter((v) => v.hostPath).map((v) => v.hostPath.path);
  t.same(paths.sort(), ['/etc/machine-id', '/opt']);
});

t.test('OpenShift: SCC binding, required-scc annotation, SELinux spc_t', async (t) => {
  const objects = render({ valuesFiles: ['ci/openshift-values.yaml'] });
  const { ds, c } = agentOf(objects);
  const role = only(objects, 'Role');
  t.same(role.rules, [{ apiGroups: ['security.openshift.io'], resources: ['securitycontextconstraints'], resourceNames: ['privileged'], verbs: ['use'] }]);
  const rb = only(objects, 'RoleBinding');
  t.same(rb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
  t.same(rb.subjects, [{ kind: 'ServiceAccount', name: ds.spec.template.spec.serviceAccountName, namespace: 'nodeprep' }]);
  t.equal(ds.spec.template.metadata.annotations['openshift.io/required-scc'], 'privileged');
  t.same(c.securityContext.seLinuxOptions, { type: 'spc_t' });
  t.same(c.securityContext.capabilities.add, ['NET_ADMIN', 'NET_RAW'], 'still only the two capabilities');

  const plain = render();
  t.notOk(plain.some((o) => o.kind === 'Role' || o.kind === 'RoleBinding'), 'no SCC binding without openshift.enabled');
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
