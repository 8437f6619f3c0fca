// The API server harness itself: a real kube-apiserver and etcd that enforce RBAC, issue
// ServiceAccount tokens bound to Pods, review them, survive a restart of the API server, and
// leave no process or file behind.
import { existsSync } from 'node:fs';
import t from 'tap';
import { ApiServer, requireKube } from '../support/kube-apiserver.js';

const why = requireKube();
if (why) {
  t.plan(0, why);
} else {
  t.setTimeout(120_000);
  const api = await ApiServer.start();
  t.teardown(() => api.stop());

  t.test('the server is the version the build script names, RBAC on', async (t) => {
    const version = await api.must<{ gitVersion: string }>('GET', '/version');
    t.equal(version.gitVersion, 'v1.37.2');
    await api.ensureNamespace('harness');
    await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'nobody', namespace: 'harness' } });
    const token = await api.serviceAccountToken('harness', 'nobody');
    const secrets = await api.request('GET', '/api/v1/namespaces/harness/secrets', undefined, { token });
    t.equal(secrets.status, 403, 'a ServiceAccount without a role may not list Secrets');
  });

  t.test('a token bound to a Pod on a node reviews with the node name', async (t) => {
    await api.create({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'agent', namespace: 'harness' } });
    await api.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'worker-1' } });
    const pod = await api.create({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'agent-x', namespace: 'harness' },
      spec: { nodeName: 'worker-1', serviceAccountName: 'agent', containers: [{ name: 'c', image: 'example.invalid/agent' }] },
    });
    const token = await api.serviceAccountToken('harness', 'agent', { audiences: ['nodeprep'], boundPod: { name: 'agent-x', uid: String(pod.metadata.uid) } });
    const review = await api.must<{ status: { authenticated: boolean; user: { username: string; extra: Record<string, string[]> }; audiences: string[] } }>(
      'POST', '/apis/authentication.k8s.io/v1/tokenreviews',
      { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['nodeprep'] } },
    );
    t.equal(review.status.authenticated, true);
    t.equal(review.status.user.username, 'system:serviceaccount:harness:agent');
    t.same(review.status.user.extra['authentication.kubernetes.io/node-name'], ['worker-1']);
    t.same(review.status.user.extra['authentication.kubernetes.io/pod-name'], ['agent-x']);
    const wrongAudience = await api.must<{ status: { authenticated?: boolean } }>(
      'POST', '/apis/authentication.k8s.io/v1/tokenreviews',
      { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['something-else'] } },
    );
    t.notOk(wrongAudience.status.authenticated, 'another audience does not accept it');
  });

  t.test('the API server restarts on the same etcd; the data stays', async (t) => {
    await api.stopApiServer();
    t.equal(await api.request('GET', '/version').then(() => 'answered', () => 'refused'), 'refused', 'down while stopped');
    await api.startApiServer();
    const node = await api.must('GET', '/api/v1/nodes/worker-1');
    t.equal(node.metadata.name, 'worker-1');
  });

  t.test('stopping removes the processes and the directory', async (t) => {
    const other = await ApiServer.start();
    const dir = other.dir;
    t.ok(existsSync(dir));
    await other.stop();
    t.notOk(existsSync(dir), 'the data directory is gone');
    t.equal(await other.request('GET', '/version').then(() => 'answered', () => 'refused'), 'refused', 'nothing answers on its port');
  });
}
