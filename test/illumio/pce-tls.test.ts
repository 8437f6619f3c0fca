// The PCE probe against real TLS servers on loopback, with certificates made by openssl: trusted,
// untrusted (the error code and the chain the server sent), expired, wrong host name, refused,
// timeout, DNS failure, not TLS. The host-name check needs no DNS: the probe connects to
// 127.0.0.1 (connectHost) and checks the PCE's name, pce.test, which it also sends as SNI.
import type { LookupFunction } from 'node:net';
import t from 'tap';
import { parsePceUrl, pceFindings, probePce, probePublicTrust, type PceAddress } from '../../aggregator/illumio/pce-tls.js';
import { DEFAULT_ROOT_CA_LOCATION } from '../../aggregator/illumio/root-ca.js';
import { makePki } from './fixtures/pki.js';
import { closedPort, plainServer, silentServer, tlsServer } from './fixtures/servers.js';

const pki = makePki();
const LOOPBACK = { connectHost: '127.0.0.1', timeoutMs: 5000 };

function address(text: string): PceAddress {
  const parsed = parsePceUrl(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.address;
}

t.test('parsePceUrl: host:port as in illumio-values.yaml', async (t) => {
  const good: [string, Partial<PceAddress>][] = [
    ['pce.example.com:8443', { host: 'pce.example.com', port: 8443, portDefaulted: false, ip: false, target: 'pce.example.com:8443' }],
    ['https://pce.example.com:8443', { host: 'pce.example.com', port: 8443 }],
    ['https://pce.example.com:8443/', { host: 'pce.example.com', port: 8443 }],
    ['  PCE.Example.COM:8443 ', { host: 'pce.example.com', target: 'pce.example.com:8443' }],
    ['pce.example.com', { port: 443, portDefaulted: true, target: 'pce.example.com:443' }],
    ['HTTPS://pce', { host: 'pce', port: 443 }],
    ['10.0.0.5:8443', { host: '10.0.0.5', ip: true, target: '10.0.0.5:8443' }],
    ['[2001:db8::1]:8443', { host: '2001:db8::1', ip: true, port: 8443, target: '[2001:db8::1]:8443' }],
    ['[2001:db8::1]', { port: 443, target: '[2001:db8::1]:443' }],
    ['pce-1.dc-2.example.com:1', { port: 1 }],
    ['pce:65535', { port: 65535 }],
  ];
  for (const [text, want] of good) {
    const parsed = parsePceUrl(text);
    t.ok(parsed.ok, `${text}: accepted`);
    if (parsed.ok) t.match(parsed.address, want, `${text}: ${JSON.stringify(want)}`);
  }
  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['   ', /empty/],
    ['http://pce.example.com:8443', /TLS, not http/],
    ['ftp://pce.example.com', /TLS, not ftp/],
    ['pce.example.com:0', /port "0" is not a number from 1 to 65535/],
    ['pce.example.com:65536', /from 1 to 65535/],
    ['pce.example.com:84a3', /port "84a3"/],
    ['pce.example.com:', /port ""/],
    ['https://pce.example.com:8443/login', /has a path \(\/login\)/],
    ['pce.example.com:8443?x=1', /query/],
    ['admin@pce.example.com:8443', /user name/],
    ['2001:db8::1', /IPv6 address goes in brackets/],
    ['[2001:db8::1:8443', /not closed/],
    ['[pce.example.com]:8443', /not an IPv6 address/],
    ['pce_1.example.com:8443', /neither a DNS name/],
    ['-pce.example.com', /neither a DNS name/],
    ['pce..example.com', /neither a DNS name/],
    ['10.0.0.300:8443', /not a valid IPv4 address/],
    ['1.2.3', /not a valid IPv4 address/],
    ['pce example.com', /white space/],
    [':8443', /no host/],
  ];
  for (const [text, message] of bad) {
    const parsed = parsePceUrl(text);
    t.notOk(parsed.ok, `${JSON.stringify(text)}: refused`);
    if (!parsed.ok) t.match(parsed.error, message, `${JSON.stringify(text)}: says why`);
  }
});

t.test('probePce: trusted through the intermediate, with SNI and the name checked', async (t) => {
  const server = await tlsServer(t, [pki.pceLeaf.cert, pki.intermediate.cert], pki.pceLeaf.key);
  const probe = await probePce(address(`pce.test:${server.port}`), { ...LOOPBACK, trustAnchors: [pki.root.cert] });
  t.equal(probe.outcome, 'trusted');
  t.equal(probe.code, undefined);
  t.equal(probe.trust, 'trust-anchors');
  t.same(server.servernames, ['pce.test'], 'SNI carries the PCE\'s name, not the address connected to');
  t.same(
    probe.chain.map((c) => [c.subject, c.issuer, c.inTrustAnchors]),
    [
      ['CN=pce.test', 'CN=nodeprep test Intermediate CA', false],
      ['CN=nodeprep test Intermediate CA', 'CN=nodeprep test Root CA', false],
      ['CN=nodeprep test Root CA', 'CN=nodeprep test Root CA', true],
    ],
    'the chain sent, completed by the trust anchor',
  );
  t.equal(probe.chain[0]!.subjectAltName, 'DNS:pce.test');
  t.match(probe.chain[0]!.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  t.same(pceFindings(probe, { location: DEFAULT_ROOT_CA_LOCATION, address: address(`pce.test:${server.port}`) }), [], 'no finding');
});

t.test('probePce: untrusted, with the code and the chain the PCE sent', async (t) => {
  const server = await tlsServer(t, [pki.pceLeaf.cert, pki.intermediate.cert], pki.pceLeaf.key);
  const pce = address(`pce.test:${server.port}`);
  const cases = [
    { name: 'another CA', anchors: [pki.otherRoot.cert], code: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' },
    { name: 'no trust anchor at all', anchors: [], code: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' },
    { name: 'a PEM that is not a certificate', anchors: ['-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n'], code: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' },
    { name: 'the intermediate instead of the root', anchors: [pki.intermediate.cert], code: 'UNABLE_TO_GET_ISSUER_CERT' },
  ];
  for (const c of cases) {
    const probe = await probePce(pce, { ...LOOPBACK, trustAnchors: c.anchors });
    t.equal(probe.outcome, 'untrusted', `${c.name}: untrusted`);
    t.equal(probe.code, c.code, `${c.name}: ${c.code}`);
    t.same(probe.chain.slice(0, 2).map((x) => x.subject), ['CN=pce.test', 'CN=nodeprep test Intermediate CA'], `${c.name}: the chain sent`);
    const findings = pceFindings(probe, { location: { namespace: 'illumio', name: 'pki-roots' }, address: pce });
    t.equal(findings.length, 1);
    const f = findings[0]!;
    t.equal(f.code, 'ILLUMIO_PCE_TLS_UNTRUSTED');
    t.equal(f.severity, 'critical');
    t.match(f.message, `ConfigMap illumio/pki-roots`);
    t.match(f.message, c.code);
    t.match(f.evidence, { target: pce.target, code: c.code, configMap: 'illumio/pki-roots' });
    t.same(
      (f.evidence.chain as { subject: string; issuer: string }[]).slice(0, 2).map((x) => [x.subject, x.issuer]),
      [
        ['CN=pce.test', 'CN=nodeprep test Intermediate CA'],
        ['CN=nodeprep test Intermediate CA', 'CN=nodeprep test Root CA'],
      ],
      `${c.name}: evidence has subjects and issuers`,
    );
    t.match(f.remediation, 'kubectl -n illumio create configmap pki-roots --from-file=root-ca.crt');
    t.match(f.remediation, `openssl s_client -connect ${pce.target} -servername pce.test -CAfile root-ca.crt`);
    t.equal(f.remediation.includes('holds an intermediate CA'), c.name === 'the intermediate instead of the root', `${c.name}: intermediate named only when it is one`);
  }
});

t.test('probePce: an expired PCE certificate', async (t) => {
  const server = await tlsServer(t, [pki.expiredLeaf.cert, pki.intermediate.cert], pki.expiredLeaf.key);
  const pce = address(`pce.test:${server.port}`);
  const probe = await probePce(pce, { ...LOOPBACK, trustAnchors: [pki.root.cert] });
  t.equal(probe.outcome, 'untrusted');
  t.equal(probe.code, 'CERT_HAS_EXPIRED');
  t.equal(probe.chain[0]!.notAfter, '2021-01-01T00:00:00.000Z');
  const [f] = pceFindings(probe, { location: DEFAULT_ROOT_CA_LOCATION, address: pce });
  t.equal(f?.code, 'ILLUMIO_PCE_TLS_UNTRUSTED');
  t.match(f?.remediation, /Renew the expired certificate on the PCE/);
});

t.test('probePce: a certificate for another host name', async (t) => {
  const server = await tlsServer(t, [pki.wrongHostLeaf.cert, pki.intermediate.cert], pki.wrongHostLeaf.key);
  const pce = address(`pce.test:${server.port}`);
  const probe = await probePce(pce, { ...LOOPBACK, trustAnchors: [pki.root.cert] });
  t.equal(probe.outcome, 'untrusted');
  t.equal(probe.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  t.match(probe.message, /pce\.test/);
  t.match(probe.message, /DNS:other\.test/);
  const [f] = pceFindings(probe, { location: DEFAULT_ROOT_CA_LOCATION, address: pce });
  t.match(f?.remediation, /subjectAltName/);

  // The same server asked for by its address: the address is checked against the certificate too.
  const byIp = address(`127.0.0.1:${server.port}`);
  const ipProbe = await probePce(byIp, { timeoutMs: 5000, trustAnchors: [pki.root.cert] });
  t.equal(ipProbe.code, 'ERR_TLS_CERT_ALTNAME_INVALID', 'an IP address is checked against IP SANs');
  t.same(server.servernames, ['pce.test'], 'no SNI is sent for an IP address');
});

t.test('probePce: the PCE\'s name resolved by DNS (an injected lookup, loopback only)', async (t) => {
  const server = await tlsServer(t, [pki.pceLeaf.cert, pki.intermediate.cert], pki.pceLeaf.key);
  const asked: string[] = [];
  const lookup = ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    asked.push(hostname);
    if (hostname !== 'pce.test') {
      callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }));
      return;
    }
    if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
    else callback(null, '127.0.0.1', 4);
  }) as unknown as LookupFunction;

  const probe = await probePce(address(`pce.test:${server.port}`), { timeoutMs: 5000, trustAnchors: [pki.root.cert], lookup });
  t.equal(probe.outcome, 'trusted');
  t.same(asked, ['pce.test']);

  const missing = address(`nowhere.test:${server.port}`);
  const failed = await probePce(missing, { timeoutMs: 5000, trustAnchors: [pki.root.cert], lookup });
  t.equal(failed.outcome, 'unreachable');
  t.equal(failed.code, 'ENOTFOUND');
  t.match(failed.message, 'the name nowhere.test does not resolve');
  const [f] = pceFindings(failed, { location: DEFAULT_ROOT_CA_LOCATION, address: missing });
  t.equal(f?.code, 'ILLUMIO_PCE_UNREACHABLE');
  t.equal(f?.severity, 'warning');
  t.match(f?.remediation, 'nslookup nowhere.test');
  t.match(f?.remediation, 'This is not a certificate problem');
});

t.test('probePce: connection refused', async (t) => {
  const port = await closedPort();
  const pce = address(`pce.test:${port}`);
  const probe = await probePce(pce, { ...LOOPBACK, trustAnchors: [pki.root.cert] });
  t.equal(probe.outcome, 'unreachable');
  t.equal(probe.code, 'ECONNREFUSED');
  t.same(probe.chain, []);
  const [f] = pceFindings(probe, { location: DEFAULT_ROOT_CA_LOCATION, address: pce });
  t.equal(f?.code, 'ILLUMIO_PCE_UNREACHABLE');
  t.match(f?.message, `connection refused at pce.test:${port}`);
  t.match(f?.remediation, 'Check the port in pce_url');
});

t.test('probePce: a server that accepts and never answers is a bounded timeout', async (t) => {
  const server = await silentServer(t);
  const pce = address(`pce.test:${server.port}`);
  const probe = await probePce(pce, { connectHost: '127.0.0.1', timeoutMs: 300, trustAnchors: [pki.root.cert] });
  t.equal(probe.outcome, 'unreachable');
  t.equal(probe.code, 'ETIMEDOUT');
  t.equal(probe.phase, 'handshake', 'TCP connected; the TLS handshake is what never came');
  t.match(probe.message, 'no TLS handshake within 300 ms');
  const [f] = pceFindings(probe, { location: DEFAULT_ROOT_CA_LOCATION, address: pce });
  t.equal(f?.code, 'ILLUMIO_PCE_UNREACHABLE');
  t.match(f?.evidence, { code: 'ETIMEDOUT', phase: 'handshake', timeoutMs: 300 });
});

t.test('probePce: something that does not speak TLS', async (t) => {
  const server = await plainServer(t);
  const probe = await probePce(address(`pce.test:${server.port}`), { ...LOOPBACK, trustAnchors: [pki.root.cert] });
  t.equal(probe.outcome, 'unreachable', 'no TLS session: unreachable, not untrusted');
  t.match(probe.code, /^(ERR_SSL_WRONG_VERSION_NUMBER|ECONNRESET|ECLOSED)$/);
  if (probe.code === 'ERR_SSL_WRONG_VERSION_NUMBER') t.match(probe.message, 'does not speak TLS');
  t.same(probe.chain, []);
});

t.test('probePublicTrust: a private CA is not publicly trusted, and that alone raises no PCE finding', async (t) => {
  const server = await tlsServer(t, [pki.pceLeaf.cert, pki.intermediate.cert], pki.pceLeaf.key);
  const pce = address(`pce.test:${server.port}`);
  const probe = await probePublicTrust(pce, LOOPBACK);
  t.equal(probe.trust, 'public-roots');
  t.equal(probe.outcome, 'untrusted');
  t.equal(probe.code, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY');
  t.match(probe.message, 'the public root CAs');
  t.same(pceFindings(probe, { location: DEFAULT_ROOT_CA_LOCATION, address: pce }), [], 'ILLUMIO_ROOT_CA_MISSING says it (checkRootCa)');
});
