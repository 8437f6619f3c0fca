// TLS on the aggregator: the certificate the chart generates (and keeps across upgrades), the
// one cert-manager issues, or one of the admin's; who mounts what of it; and plain http when
// TLS is off.
import t from 'tap';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { request, createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { only, render, template, type K8sObject } from '../support/helm.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const names = (domain = 'cluster.local') => [
  'nodeprep-aggregator',
  'nodeprep-aggregator.nodeprep',
  'nodeprep-aggregator.nodeprep.svc',
  `nodeprep-aggregator.nodeprep.svc.${domain}`,
];

const pem = (secret: K8sObject, key: string) => Buffer.from(secret.data[key], 'base64').toString();

function tlsSecret(objects: K8sObject[]): K8sObject {
  return only(objects, 'Secret', '-aggregator-tls');
}

/** The Secret and key behind a file a container names in an env var. */
function fileSource(pod: Any, c: Any, envName: string): { secretName: string; key: string } | undefined {
  const path: string | undefined = ((c.env ?? []) as Any[]).find((e) => e.name === envName)?.value;
  if (!path) return undefined;
  const mount = (c.volumeMounts as Any[]).find((m) => path.startsWith(`${m.mountPath}/`));
  const volume = (pod.volumes as Any[]).find((v) => v.name === mount.name);
  const item = (volume.secret.items as Any[]).find((i) => i.path === path.slice(mount.mountPath.length + 1));
  return { secretName: volume.secret.secretName, key: item.key };
}

function wiring(objects: K8sObject[]) {
  const agent = only(objects, 'DaemonSet').spec.template.spec;
  const aggregator = only(objects, 'Deployment').spec.template.spec;
  return {
    agentCa: fileSource(agent, agent.containers[0], 'AGGREGATOR_CA_FILE'),
    cert: fileSource(aggregator, aggregator.containers[0], 'TLS_CERT_FILE'),
    key: fileSource(aggregator, aggregator.containers[0], 'TLS_KEY_FILE'),
  };
}

t.test('default: a generated CA and serving certificate for the Service\'s names', async (t) => {
  const objects = render();
  const secret = tlsSecret(objects);
  t.equal(secret.metadata.name, 'nodeprep-aggregator-tls');
  t.equal(secret.type, 'kubernetes.io/tls');
  t.same(Object.keys(secret.data).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
  t.equal(secret.metadata.annotations['nodeprep/dns-names'], names().join(','), 'records the names it was made for');

  const cert = new X509Certificate(pem(secret, 'tls.crt'));
  const ca = new X509Certificate(pem(secret, 'ca.crt'));
  t.equal(cert.subjectAltName, names().map((n) => `DNS:${n}`).join(', '), 'SANs: <svc>, <svc>.<ns>, <svc>.<ns>.svc, <svc>.<ns>.svc.cluster.local');
  t.equal(ca.ca, true, 'ca.crt is a CA');
  t.equal(cert.ca, false, 'tls.crt is not');
  t.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'tls.crt is signed by ca.crt');
  t.ok(cert.checkPrivateKey(createPrivateKey(pem(secret, 'tls.key'))), 'tls.key is the certificate\'s key');
  t.ok(new Date(cert.validTo).getTime() > Date.now() + 9 * 365 * 86400_000, 'valid for about ten years');
  t.ok(cert.checkHost('nodeprep-aggregator.nodeprep.svc'), 'valid for the agents\' default URL host');

  t.same(wiring(objects), {
    agentCa: { secretName: 'nodeprep-aggregator-tls', key: 'ca.crt' },
    cert: { secretName: 'nodeprep-aggregator-tls', key: 'tls.crt' },
    key: { secretName: 'nodeprep-aggregator-tls', key: 'tls.key' },
  }, 'the aggregator gets the certificate and key, the agents the CA alone');

  t.not(tlsSecret(render()).data['ca.crt'], secret.data['ca.crt'], 'a fresh CA where nothing can be looked up (helm template)');
});

// The generated files, served by a real TLS server on loopback: a client that trusts ca.crt and
// asks for the Service name (as the agents do) gets through; one that trusts another CA does not.
t.test('a client trusting the generated CA reaches a server using the generated certificate', async (t) => {
  const secret = tlsSecret(render());
  const other = tlsSecret(render());
  const server = createServer({ cert: pem(secret, 'tls.crt'), key: pem(secret, 'tls.key') }, (_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const get = (ca: string, servername: string) =>
    new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/healthz', ca, servername, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve(body));
      });
      req.on('error', reject).end();
    });
  t.equal(await get(pem(secret, 'ca.crt'), 'nodeprep-aggregator.nodeprep.svc'), 'ok', 'trusted for the Service name');
  await t.rejects(get(pem(other, 'ca.crt'), 'nodeprep-aggregator.nodeprep.svc'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'another CA is refused');
  await t.rejects(get(pem(secret, 'ca.crt'), 'nodeprep-aggregator.other.svc'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }, 'another name is refused');
});

t.test('the cluster domain is a value', async (t) => {
  const secret = tlsSecret(render({ set: { 'aggregator.tls.clusterDomain': 'k8s.example.internal.' } }));
  const cert = new X509Certificate(pem(secret, 'tls.crt'));
  t.match(cert.subjectAltName, /DNS:nodeprep-aggregator\.nodeprep\.svc\.k8s\.example\.internal$/, 'trailing dot dropped');
});

// Kept across upgrades and remade when its names change: test/chart/install.test.ts, with the real
// helm against the real API server.

t.test('cert-manager issues the certificate when asked', async (t) => {
  const objects = render({ valuesFiles: ['ci/cert-manager-values.yaml'] });
  t.notOk(objects.some((o) => o.kind === 'Secret'), 'the chart renders no TLS Secret: cert-manager writes it');
  const c = only(objects, 'Certificate');
  // render.test.ts validates it against cert-manager's CRD schema (@kubernetes-models/cert-manager);
  // this checks what it asks for.
  t.equal(c.apiVersion, 'cert-manager.io/v1');
  t.equal(c.metadata.name, 'nodeprep-aggregator');
  t.equal(c.spec.secretName, 'nodeprep-aggregator-tls');
  t.same(c.spec.dnsNames, names('k8s.example.internal'), 'the Service\'s names, with the cluster domain');
  t.same(c.spec.issuerRef, { name: 'internal-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
  t.same(c.spec.usages, ['server auth', 'digital signature']);
  t.same(c.spec.privateKey, { algorithm: 'ECDSA', size: 256, rotationPolicy: 'Always' });
  t.notOk(c.spec.isCA, 'a serving certificate, not a CA');
  t.same(wiring(objects), {
    agentCa: { secretName: 'nodeprep-aggregator-tls', key: 'ca.crt' },
    cert: { secretName: 'nodeprep-aggregator-tls', key: 'tls.crt' },
    key: { secretName: 'nodeprep-aggregator-tls', key: 'tls.key' },
  }, 'the same Secret, mounted the same way');
  t.notOk(render().some((o) => o.kind === 'Certificate'), 'no Certificate by default');

  const noIssuer = template({ set: { 'aggregator.tls.certManager.enabled': true } });
  t.not(noIssuer.status, 0, 'without an issuer it fails');
  t.match(noIssuer.stderr, /certManager\.enabled needs aggregator\.tls\.certManager\.issuerRef\.name/);
  const both = template({ valuesFiles: ['ci/cert-manager-values.yaml'], set: { 'aggregator.tls.existingSecret': 'mine' } });
  t.not(both.status, 0, 'cert-manager and an existing Secret together fail');
  t.match(both.stderr, /choose one source for the certificate/);
});

t.test('an existing TLS Secret of the admin\'s', async (t) => {
  const objects = render({ valuesFiles: ['ci/shared-tokens-values.yaml'] });
  t.notOk(objects.some((o) => o.kind === 'Secret' || o.kind === 'Certificate'), 'neither generated nor requested');
  t.same(wiring(objects), {
    agentCa: { secretName: 'nodeprep-central-tls', key: 'ca.crt' },
    cert: { secretName: 'nodeprep-central-tls', key: 'tls.crt' },
    key: { secretName: 'nodeprep-central-tls', key: 'tls.key' },
  });
});

t.test('aggregator.tls.enabled=false keeps plain http', async (t) => {
  const objects = render({ valuesFiles: ['ci/tls-disabled-values.yaml'] });
  t.notOk(objects.some((o) => o.kind === 'Secret' || o.kind === 'Certificate'), 'no certificate');
  t.same(wiring(objects), { agentCa: undefined, cert: undefined, key: undefined }, 'no CA, certificate or key files');
  const agent = only(objects, 'DaemonSet').spec.template.spec.containers[0];
  t.equal((agent.env as Any[]).find((e) => e.name === 'AGGREGATOR_URL').value, 'http://nodeprep-aggregator.nodeprep.svc:8080');
  const c = only(objects, 'Deployment').spec.template.spec.containers[0];
  t.same(c.readinessProbe.httpGet, { path: '/readyz', port: 'http' }, 'probes over http');
  t.same(only(objects, 'Service').spec.ports[0], { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' });
});
