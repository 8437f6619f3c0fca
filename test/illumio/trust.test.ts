// checkIllumioTrust: the ConfigMap check and the PCE handshake together, against a real TLS server
// on loopback; which probe runs when, and which findings come out.
import t from 'tap';
import { parsePceUrl, type PceAddress, type PceProbe } from '../../aggregator/illumio/pce-tls.js';
import { DEFAULT_ROOT_CA_LOCATION, type RootCaConfigMap } from '../../aggregator/illumio/root-ca.js';
import { checkIllumioTrust, trustFacts, type Probes } from '../../aggregator/illumio/trust.js';
import { makePki } from './fixtures/pki.js';
import { tlsServer } from './fixtures/servers.js';

const pki = makePki();
const location = DEFAULT_ROOT_CA_LOCATION;
const probeOptions = { connectHost: '127.0.0.1', timeoutMs: 5000 };

function address(text: string): PceAddress {
  const parsed = parsePceUrl(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.address;
}

function cm(data: Record<string, string>): RootCaConfigMap {
  return { ...location, data };
}

t.test('with a PCE URL: the ConfigMap\'s certificates are the only trust anchors', async (t) => {
  const server = await tlsServer(t, [pki.pceLeaf.cert, pki.intermediate.cert], pki.pceLeaf.key);
  const pce = address(`pce.test:${server.port}`);
  const now = new Date();

  const good = await checkIllumioTrust({ location, configMap: cm({ 'root-ca.crt': pki.root.cert }), pce, now, probeOptions });
  t.equal(good.probe?.outcome, 'trusted');
  t.equal(good.probe?.trust, 'trust-anchors');
  t.same(good.findings, []);
  t.same(trustFacts(good), { state: 'ok', pceOutcome: 'trusted' });

  const wrong = await checkIllumioTrust({ location, configMap: cm({ 'root-ca.crt': pki.otherRoot.cert }), pce, now, probeOptions });
  t.same(wrong.findings.map((f) => f.code), ['ILLUMIO_PCE_TLS_UNTRUSTED'], 'a valid CA, but not the PCE\'s');
  t.same(trustFacts(wrong), { state: 'ok', pceOutcome: 'untrusted' });

  const expired = await checkIllumioTrust({ location, configMap: cm({ 'root-ca.crt': pki.expiredCa.cert }), pce, now, probeOptions });
  t.same(expired.findings.map((f) => f.code).sort(), ['ILLUMIO_PCE_TLS_UNTRUSTED', 'ILLUMIO_ROOT_CA_INVALID']);

  const empty = await checkIllumioTrust({ location, configMap: cm({ 'root-ca.crt': 'nothing' }), pce, now, probeOptions });
  t.equal(empty.probe, undefined, 'no certificate to trust: no handshake');
  t.same(empty.findings.map((f) => f.code), ['ILLUMIO_ROOT_CA_INVALID']);
});

t.test('no ConfigMap: the public roots decide whether one is needed', async (t) => {
  const server = await tlsServer(t, [pki.pceLeaf.cert, pki.intermediate.cert], pki.pceLeaf.key);
  const pce = address(`pce.test:${server.port}`);
  const now = new Date();

  const privateCa = await checkIllumioTrust({ location, configMap: undefined, pce, now, probeOptions });
  t.equal(privateCa.probe?.trust, 'public-roots');
  t.equal(privateCa.probe?.outcome, 'untrusted');
  t.same(privateCa.findings.map((f) => [f.code, f.severity]), [['ILLUMIO_ROOT_CA_MISSING', 'warning']], 'needed, and said once');
  t.match(privateCa.findings[0]!.message, 'private CA');

  // A publicly trusted PCE cannot be served from loopback; the probe is replaced, the rest is real.
  const calls: string[] = [];
  const publiclyTrusted: Probes = {
    probePce: async () => {
      calls.push('probePce');
      throw new Error('not expected');
    },
    probePublicTrust: async (a): Promise<PceProbe> => {
      calls.push('probePublicTrust');
      return { target: a.target, trust: 'public-roots', outcome: 'trusted', message: 'ok', chain: [], timeoutMs: 1, checkedAt: now.toISOString() };
    },
  };
  const publicCa = await checkIllumioTrust({ location, configMap: undefined, pce, now }, publiclyTrusted);
  t.same(calls, ['probePublicTrust']);
  t.same(publicCa.findings.map((f) => [f.code, f.severity]), [['ILLUMIO_ROOT_CA_MISSING', 'info']]);
  t.match(publicCa.findings[0]!.message, 'none is needed');
});

t.test('without a PCE URL: the ConfigMap alone, no handshake', async (t) => {
  const result = await checkIllumioTrust({ location, configMap: undefined, now: new Date() });
  t.equal(result.probe, undefined);
  t.same(result.findings.map((f) => [f.code, f.severity]), [['ILLUMIO_ROOT_CA_MISSING', 'warning']]);
  t.same(trustFacts(result), { state: 'missing' });
});
