// checkRootCa against certificates made by openssl: a root CA, a bundle with the intermediate,
// an expired CA, one expiring in 10 days, not-CA certificates, a truncated PEM, DER and no PEM.
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { PceProbe } from '../../aggregator/illumio/pce-tls.js';
import { checkRootCa, DEFAULT_ROOT_CA_LOCATION, pemBlocks, type RootCaConfigMap, type RootCaLocation } from '../../aggregator/illumio/root-ca.js';
import { makePki } from './fixtures/pki.js';

const pki = makePki();
const NOW = new Date();
const DAY = 86_400_000;
const SITE: RootCaLocation = { namespace: 'illumio', name: 'pki-roots' };

function configMap(data: Record<string, string>, binaryData?: Record<string, string>, location: RootCaLocation = DEFAULT_ROOT_CA_LOCATION): RootCaConfigMap {
  return { ...location, data, ...(binaryData ? { binaryData } : {}) };
}

function check(cm: RootCaConfigMap | undefined, extra: { now?: Date; expiringDays?: number; publicProbe?: PceProbe; location?: RootCaLocation } = {}) {
  const location = extra.location ?? DEFAULT_ROOT_CA_LOCATION;
  return checkRootCa({ location, configMap: cm, now: extra.now ?? NOW, ...(extra.expiringDays === undefined ? {} : { expiringDays: extra.expiringDays }), ...(extra.publicProbe ? { publicProbe: extra.publicProbe } : {}) });
}

/** The base64 body lines of a PEM: none of them may ever appear in a finding. */
function bodyLines(pem: string): string[] {
  return pem.split('\n').filter((line) => line.length >= 40 && !line.startsWith('-----'));
}

function publicProbe(outcome: PceProbe['outcome'], code?: string): PceProbe {
  return {
    target: 'pce.example.com:8443',
    trust: 'public-roots',
    outcome,
    ...(code ? { code } : {}),
    message: 'x',
    chain: [],
    timeoutMs: 1000,
    checkedAt: NOW.toISOString(),
  };
}

t.test('a valid root CA: ok, no findings, the facts openssl shows', async (t) => {
  const result = check(configMap({ 'root-ca.crt': pki.root.cert }));
  t.equal(result.state, 'ok');
  t.same(result.findings, []);
  t.equal(result.certificates.length, 1);
  const c = result.certificates[0]!;
  t.match(c, { key: 'root-ca.crt', block: 1, subject: 'CN=nodeprep test Root CA', issuer: 'CN=nodeprep test Root CA', ca: true, selfSigned: true, problems: [] });
  const openssl = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: pki.root.cert }).toString();
  t.equal(`sha256 Fingerprint=${c.fingerprint256}\n`, openssl, 'the fingerprint as `openssl x509 -fingerprint -sha256` prints it');
  t.equal(c.notAfter, new X509Certificate(pki.root.cert).validToDate.toISOString());
  t.equal(result.trustAnchors.length, 1);
  t.equal(new X509Certificate(result.trustAnchors[0]!).fingerprint256, c.fingerprint256, 'the trust anchor is the certificate');
});

t.test('every certificate of every key, data and binaryData', async (t) => {
  const result = check(
    configMap(
      { 'bundle.crt': `# our roots\n${pki.root.cert}\n${pki.intermediate.cert}`, 'notes.txt': 'rotated 2024' },
      { 'other.crt': Buffer.from(pki.otherRoot.cert).toString('base64') },
    ),
  );
  t.equal(result.state, 'ok');
  t.same(
    result.certificates.map((c) => [c.key, c.block, c.subject]),
    [
      ['bundle.crt', 1, 'CN=nodeprep test Root CA'],
      ['bundle.crt', 2, 'CN=nodeprep test Intermediate CA'],
      ['other.crt', 1, 'CN=Some Other Root CA'],
    ],
  );
  t.equal(result.certificates[1]!.selfSigned, false, 'the intermediate is a CA, not a root');
  t.equal(result.trustAnchors.length, 3);
});

t.test('ILLUMIO_ROOT_CA_MISSING: warning, info when the PCE is publicly trusted', async (t) => {
  const plain = check(undefined, { location: SITE });
  t.equal(plain.state, 'missing');
  t.equal(plain.findings.length, 1);
  const f = plain.findings[0]!;
  t.equal(f.code, 'ILLUMIO_ROOT_CA_MISSING');
  t.equal(f.severity, 'warning');
  t.match(f.message, 'no ConfigMap illumio/pki-roots');
  t.match(f.remediation, '`kubectl -n illumio create configmap pki-roots --from-file=root-ca.crt`', 'the guide\'s command with the configured names');
  t.match(f.remediation, 'ignore_cert');

  const trusted = check(undefined, { location: SITE, publicProbe: publicProbe('trusted') }).findings[0]!;
  t.equal(trusted.code, 'ILLUMIO_ROOT_CA_MISSING');
  t.equal(trusted.severity, 'info');
  t.match(trusted.message, 'none is needed');
  t.match(trusted.message, 'public root CAs');
  t.equal(trusted.id, f.id, 'the same problem, the same id, whatever its severity');

  const untrusted = check(undefined, { publicProbe: publicProbe('untrusted', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY') }).findings[0]!;
  t.equal(untrusted.severity, 'warning');
  t.match(untrusted.message, 'private CA');
  t.match(untrusted.message, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY');

  const unreachable = check(undefined, { publicProbe: publicProbe('unreachable', 'ECONNREFUSED') }).findings[0]!;
  t.equal(unreachable.severity, 'warning');
  t.match(unreachable.message, 'whether one is needed is unknown');

  const notPublic = check(undefined, { publicProbe: { ...publicProbe('trusted'), trust: 'trust-anchors' } }).findings[0]!;
  t.equal(notPublic.severity, 'warning', 'a probe with other trust anchors says nothing about public trust');
});

t.test('ILLUMIO_ROOT_CA_INVALID: no PEM certificate', async (t) => {
  const cases: { name: string; cm: RootCaConfigMap; message: RegExp }[] = [
    { name: 'no keys', cm: configMap({}), message: /holds no PEM certificate \(keys: none\)/ },
    { name: 'a key without PEM', cm: configMap({ 'root-ca.crt': 'see the wiki' }), message: /keys: root-ca\.crt/ },
    { name: 'a private key only', cm: configMap({ 'tls.key': pki.root.key }), message: /holds no PEM certificate/ },
    {
      name: 'DER in binaryData',
      cm: configMap({}, { 'root-ca.der': new X509Certificate(pki.root.cert).raw.toString('base64') }),
      message: /root-ca\.der holds a DER certificate, which must be converted to PEM/,
    },
  ];
  for (const c of cases) {
    const result = check(c.cm);
    t.equal(result.state, 'invalid', `${c.name}: invalid`);
    t.equal(result.findings.length, 1, `${c.name}: one finding`);
    const f = result.findings[0]!;
    t.equal(f.code, 'ILLUMIO_ROOT_CA_INVALID');
    t.equal(f.severity, 'critical');
    t.match(f.message, c.message, c.name);
    t.match(f.remediation, '--dry-run=client -o yaml | kubectl apply -f -');
  }
  t.match(check(cases[3]!.cm).findings[0]!.remediation, 'openssl x509 -inform der');
});

t.test('ILLUMIO_ROOT_CA_INVALID: a PEM block that does not parse', async (t) => {
  const body = bodyLines(pki.root.cert);
  const corrupt = `-----BEGIN CERTIFICATE-----\n${body.slice(0, 2).join('\n')}\n-----END CERTIFICATE-----\n`;
  const cases = [
    { name: 'truncated', text: pki.truncated, reason: /cut short/ },
    { name: 'truncated, followed by a good one', text: `${pki.truncated}\n${pki.root.cert}`, reason: /cut short/ },
    { name: 'a body that is not a certificate', text: corrupt, reason: /does not parse as an X\.509 certificate/ },
    { name: 'an OpenSSL TRUSTED CERTIFICATE', text: pki.root.cert.replace(/CERTIFICATE/g, 'TRUSTED CERTIFICATE'), reason: /"TRUSTED CERTIFICATE" block/ },
  ];
  for (const c of cases) {
    const result = check(configMap({ 'root-ca.crt': c.text }));
    t.equal(result.state, 'invalid', `${c.name}: invalid`);
    const invalid = result.findings.filter((f) => f.code === 'ILLUMIO_ROOT_CA_INVALID');
    t.equal(invalid.length, 1, `${c.name}: one finding`);
    t.match(invalid[0]!.message, /ConfigMap illumio-system\/root-ca-config, key root-ca\.crt, certificate 1: /);
    t.match(invalid[0]!.message, c.reason, c.name);
    t.match(invalid[0]!.evidence, { key: 'root-ca.crt', block: 1 });
    for (const line of bodyLines(c.text)) t.notOk(JSON.stringify(result.findings).includes(line), `${c.name}: no PEM in the finding`);
  }
  const mixed = check(configMap({ 'root-ca.crt': `${pki.truncated}\n${pki.root.cert}` }));
  t.equal(mixed.certificates.length, 1, 'the good certificate after a cut one is still read');
  t.equal(mixed.certificates[0]!.block, 2);
});

t.test('ILLUMIO_ROOT_CA_INVALID: not a CA, expired, not yet valid; the evidence names the certificate, never its PEM', async (t) => {
  const cases = [
    { name: 'CA:FALSE', cert: pki.notCa.cert, problems: ['not-ca'], message: /not a CA certificate/ },
    { name: 'no basicConstraints', cert: pki.noBasicConstraints.cert, problems: ['not-ca'], message: /not a CA certificate/ },
    { name: 'the PCE\'s own certificate', cert: pki.pceLeaf.cert, problems: ['not-ca'], message: /not a CA certificate/ },
    { name: 'an expired CA', cert: pki.expiredCa.cert, problems: ['expired'], message: /expired on 2021-01-01T00:00:00\.000Z/ },
    { name: 'an expired leaf', cert: pki.expiredLeaf.cert, problems: ['not-ca', 'expired'], message: /not a CA certificate.*; it expired/ },
  ];
  for (const c of cases) {
    const result = check(configMap({ 'root-ca.crt': c.cert }));
    t.equal(result.state, 'invalid', `${c.name}: invalid`);
    t.equal(result.findings.length, 1, `${c.name}: one finding`);
    const f = result.findings[0]!;
    t.equal(f.code, 'ILLUMIO_ROOT_CA_INVALID');
    t.match(f.message, c.message, c.name);
    const x509 = new X509Certificate(c.cert);
    t.match(
      f.evidence,
      {
        configMap: 'illumio-system/root-ca-config',
        key: 'root-ca.crt',
        subject: x509.subject.replace(/\n/g, ', '),
        issuer: x509.issuer.replace(/\n/g, ', '),
        notBefore: x509.validFromDate.toISOString(),
        notAfter: x509.validToDate.toISOString(),
        fingerprint256: x509.fingerprint256,
        problems: c.problems,
      },
      `${c.name}: evidence`,
    );
    for (const line of bodyLines(c.cert)) t.notOk(JSON.stringify(f).includes(line), `${c.name}: no PEM in the finding`);
  }
  t.match(check(configMap({ 'root-ca.crt': pki.pceLeaf.cert })).findings[0]!.remediation, 'openssl s_client', 'a leaf: how to get the root instead');

  const early = check(configMap({ 'root-ca.crt': pki.root.cert }), { now: new Date(NOW.getTime() - 3 * DAY) });
  t.equal(early.state, 'invalid');
  t.same(early.certificates[0]!.problems, ['not-yet-valid']);
  t.match(early.findings[0]!.message, /not valid before/);
});

t.test('ILLUMIO_ROOT_CA_EXPIRING: within 30 days by default, configurable', async (t) => {
  const cm = configMap({ 'root-ca.crt': pki.root.cert, 'next.crt': pki.expiringCa.cert });
  const result = check(cm);
  t.equal(result.state, 'ok', 'an expiring CA still works');
  t.equal(result.findings.length, 1);
  const f = result.findings[0]!;
  t.equal(f.code, 'ILLUMIO_ROOT_CA_EXPIRING');
  t.equal(f.severity, 'warning');
  t.match(f.message, /key next\.crt: CA certificate "CN=Expiring Root CA" expires on .* \(in (9|10) days\)/);
  t.match(f.evidence, { key: 'next.crt', expiringDays: 30, subject: 'CN=Expiring Root CA' });
  t.match(f.remediation, 'next to the current one');

  t.same(check(cm, { expiringDays: 5 }).findings, [], 'not within 5 days');
  t.equal(check(cm, { expiringDays: 11 }).findings.length, 1, 'within 11 days');
  t.same(check(configMap({ 'leaf.crt': pki.pceLeaf.cert }), { expiringDays: 400 }).certificates[0]!.problems, ['not-ca'], 'only a CA is said to be expiring');
});

t.test('ILLUMIO_ROOT_CA_INTERMEDIATE: an intermediate CA without the root it leads to', async (t) => {
  // What the warning says of OpenSSL, shown with openssl itself: the intermediate alone does not
  // verify the PCE's certificate; with the root it does, and so it does when partial chains are allowed.
  const verify = (anchors: string[], extra: string[] = []) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nodeprep-verify-'));
    try {
      writeFileSync(path.join(dir, 'ca.crt'), anchors.join(''));
      writeFileSync(path.join(dir, 'pce.crt'), pki.pceLeaf.cert);
      return spawnSync('openssl', ['verify', ...extra, '-CAfile', 'ca.crt', 'pce.crt'], { cwd: dir, encoding: 'utf8' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  t.not(verify([pki.intermediate.cert]).status, 0, 'openssl verify: the intermediate alone is not enough');
  t.match(verify([pki.intermediate.cert]).stdout + verify([pki.intermediate.cert]).stderr, /unable to get issuer certificate/);
  t.equal(verify([pki.intermediate.cert, pki.root.cert]).status, 0, 'with its root it is');
  t.equal(verify([pki.intermediate.cert], ['-partial_chain']).status, 0, 'and so it is where partial chains are allowed (as Go does)');

  const alone = check(configMap({ 'root-ca.crt': pki.intermediate.cert }));
  t.equal(alone.state, 'ok', 'a valid CA certificate: not invalid');
  t.equal(alone.findings.length, 1);
  const f = alone.findings[0]!;
  t.equal(f.code, 'ILLUMIO_ROOT_CA_INTERMEDIATE');
  t.equal(f.severity, 'warning');
  t.equal(
    f.message,
    'ConfigMap illumio-system/root-ca-config, key root-ca.crt: "CN=nodeprep test Intermediate CA" is an intermediate CA (issued by "CN=nodeprep test Root CA"), ' +
      'not the root CA the guide asks for, and the root it leads to is not in the ConfigMap: clients built on OpenSSL will not trust the PCE through it',
  );
  t.match(f.remediation, /Go's TLS takes any certificate it is given as a trust anchor.*OpenSSL, by default, ends a chain only at a self-signed root/);
  t.match(f.remediation, '--dry-run=client -o yaml | kubectl apply -f -');
  t.match(f.evidence, { key: 'root-ca.crt', subject: 'CN=nodeprep test Intermediate CA', issuer: 'CN=nodeprep test Root CA', ca: true, selfSigned: false });
  for (const line of bodyLines(pki.intermediate.cert)) t.notOk(JSON.stringify(f).includes(line), 'no PEM in the finding');

  // The chain up to a self-signed root is there: in the same key, or in another.
  t.same(check(configMap({ 'root-ca.crt': `${pki.intermediate.cert}${pki.root.cert}` })).findings, [], 'intermediate and root in one file');
  t.same(check(configMap({ 'a.crt': pki.intermediate.cert }, { 'z.crt': Buffer.from(pki.root.cert).toString('base64') })).findings, [], 'the root in another key');
  // A root, but not this intermediate's: still no chain.
  const unrelated = check(configMap({ 'root-ca.crt': `${pki.intermediate.cert}${pki.otherRoot.cert}` }));
  t.same(unrelated.findings.map((x) => x.code), ['ILLUMIO_ROOT_CA_INTERMEDIATE'], 'another root does not complete the chain');
  t.equal(unrelated.findings[0]!.id, f.id, 'the same certificate in the same ConfigMap, the same id');
  // A root with the right name and another key did not sign the intermediate: no chain either.
  const impostor = check(configMap({ 'root-ca.crt': `${pki.intermediate.cert}${pki.impostorRoot.cert}` }));
  t.same(impostor.findings.map((x) => x.code), ['ILLUMIO_ROOT_CA_INTERMEDIATE'], 'a root of the same name and another key does not complete it');
});

t.test('findings are stable per certificate and per ConfigMap', async (t) => {
  const cm = configMap({ 'a.crt': pki.expiredCa.cert, 'b.crt': pki.notCa.cert, 'c.crt': pki.root.cert });
  const first = check(cm);
  const again = check(cm);
  t.same(first.findings.map((f) => f.id), again.findings.map((f) => f.id), 'same input, same ids');
  t.equal(new Set(first.findings.map((f) => f.id)).size, 2, 'one id per certificate');
  t.equal(first.state, 'invalid', 'one unusable certificate makes the ConfigMap invalid, even next to a good one');
  t.equal(first.trustAnchors.length, 3, 'every certificate that parses is a trust anchor, as the product loads them');
  const elsewhere = check(configMap({ 'a.crt': pki.expiredCa.cert }, undefined, SITE), { location: SITE });
  t.not(elsewhere.findings[0]!.id, first.findings[0]!.id, 'another ConfigMap, another id');
});

t.test('pemBlocks: complete and cut blocks', async (t) => {
  t.same(
    pemBlocks(`x\n${pki.root.cert}${pki.root.key}`).map((b) => [b.type, b.complete]),
    [
      ['CERTIFICATE', true],
      ['PRIVATE KEY', true],
    ],
  );
  t.same(pemBlocks(`${pki.truncated}${pki.root.cert}`).map((b) => b.complete), [false, true], 'a BEGIN before the END is a cut block');
  t.same(pemBlocks('no pem here'), []);
});
