// The one I/O edge of the Illumio checks: a real TLS handshake with the PCE, trusting only the
// root CA ConfigMap's certificates (or, to learn whether the ConfigMap is needed at all, only the
// public roots), with the PCE's name as SNI and for the host-name check. The probe returns plain
// data and never throws; pceFindings words it.
//
// Typical use (trust.ts does exactly this): checkRootCa first; with a PCE URL, probePce with the
// ConfigMap's certificates when it has some, or probePublicTrust when there is no ConfigMap (its
// result goes back into checkRootCa, which then says whether the ConfigMap is needed).
import { X509Certificate } from 'node:crypto';
import { isIP, isIPv6, type LookupFunction } from 'node:net';
import tls from 'node:tls';
import { makeFinding, type FindingDraft } from '../detect/finding.js';
import { certificateFacts } from './certificates.js';
import { replaceCommand, RESTART_AFTER_CHANGE, type RootCaLocation } from './root-ca.js';

export const DEFAULT_PCE_PORT = 443;
export const DEFAULT_PROBE_TIMEOUT_MS = 10_000;

export interface PceAddress {
  /** A lower-case DNS name, an IPv4 address, or an IPv6 address without brackets. */
  host: string;
  port: number;
  /** No port was written: DEFAULT_PCE_PORT is assumed (Illumio's examples use 8443). */
  portDefaulted: boolean;
  ip: boolean;
  /** host:port as it is written back to the admin, IPv6 in brackets. */
  target: string;
}

export type PceUrlParse = { ok: true; address: PceAddress } | { ok: false; error: string };

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const EXAMPLE = 'write host:port as in illumio-values.yaml, e.g. pce.example.com:8443';

/**
 * Parses `pce_url` as Illumio's values have it: host:port (the port defaults to 443), optionally
 * with https:// in front and a trailing slash. No path, query, user or other scheme: each is an
 * error that says what to write instead. For config validation as well as for the probe.
 */
export function parsePceUrl(text: string): PceUrlParse {
  const fail = (error: string): PceUrlParse => ({ ok: false, error: `pce_url "${text}": ${error}` });
  let rest = text.trim();
  if (rest === '') return { ok: false, error: `pce_url is empty: ${EXAMPLE}` };
  if (/\s/.test(rest)) return fail('contains white space');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(rest);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'https') return fail(`the PCE is reached over TLS, not ${scheme[1]}: ${EXAMPLE} (https:// may be written in front)`);
    rest = rest.slice(scheme[0].length);
  }
  if (rest.endsWith('/')) rest = rest.slice(0, -1);
  if (rest.includes('/')) return fail(`has a path (${rest.slice(rest.indexOf('/'))}); pce_url is host and port only`);
  if (/[?#]/.test(rest)) return fail('has a query or fragment; pce_url is host and port only');
  if (rest.includes('@')) return fail('has a user name; pce_url is host and port only');

  let host: string;
  let portText: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) return fail('an IPv6 address opened with [ is not closed with ]');
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) return fail(`unexpected "${after}" after the IPv6 address`);
    portText = after === '' ? undefined : after.slice(1);
    if (!isIPv6(host)) return fail(`"${host}" is not an IPv6 address`);
  } else {
    const colons = rest.split(':').length - 1;
    if (colons > 1) return fail('an IPv6 address goes in brackets: [2001:db8::1]:8443');
    [host = '', portText] = rest.split(':');
  }
  if (host === '') return fail(`no host: ${EXAMPLE}`);

  let port = DEFAULT_PCE_PORT;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) return fail(`port "${portText}" is not a number from 1 to 65535`);
    port = Number(portText);
  }

  const ip = isIP(host) !== 0;
  if (!ip) {
    host = host.toLowerCase();
    const labels = host.split('.');
    if (host.length > 253 || !labels.every((label) => LABEL.test(label))) {
      return fail(`"${host}" is neither a DNS name (dot-separated labels of letters, digits and hyphens, at most 63 characters each) nor an IP address`);
    }
    // A name whose last label is all digits would be an IPv4 address, and is not one.
    if (/^\d+$/.test(labels[labels.length - 1]!)) return fail(`"${host}" is not a valid IPv4 address`);
  }
  const target = `${isIPv6(host) ? `[${host}]` : host}:${port}`;
  return { ok: true, address: { host, port, portDefaulted: portText === undefined, ip, target } };
}

/** What the trust anchors of a probe were. */
export type PceTrust = 'trust-anchors' | 'public-roots';

export interface PeerCertificate {
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  fingerprint256: string;
  /** "DNS:pce.example.com, IP Address:10.0.0.5", when the certificate has the extension. */
  subjectAltName?: string;
  /** The certificate is one of the probe's trust anchors (a chain ends in one when it verifies). */
  inTrustAnchors: boolean;
}

export interface PceProbe {
  target: string;
  trust: PceTrust;
  /**
   * trusted: the handshake completed and the chain verifies for the PCE's name;
   * untrusted: the handshake completed and the chain does not verify (code says why);
   * unreachable: no TLS session at all (DNS, refused, timeout, no route, handshake failure).
   */
  outcome: 'trusted' | 'untrusted' | 'unreachable';
  /** An OpenSSL verify code, Node's ERR_TLS_CERT_ALTNAME_INVALID, or a socket error code. */
  code?: string;
  /** One plain sentence for the admin. */
  message: string;
  /**
   * The PCE's chain, leaf first, as the handshake saw it: what the PCE sent, followed by the trust
   * anchor that completed it, if any. Empty when no handshake took place.
   */
  chain: PeerCertificate[];
  /** Where the time ran out, for a timeout: DNS, TCP connect or the TLS handshake. */
  phase?: 'lookup' | 'connect' | 'handshake';
  timeoutMs: number;
  checkedAt: string;
}

export interface ProbeOptions {
  /** The whole probe (DNS, connect, handshake) ends within this time (default 10 s). */
  timeoutMs?: number;
  /**
   * Connect to this address instead of the PCE's host. SNI and the host-name check still use
   * the PCE's host. For tests (a server on 127.0.0.1 presenting pce.test), or a PCE reached at
   * a fixed address.
   */
  connectHost?: string;
  /** The DNS lookup to use (node:net's); for tests. */
  lookup?: LookupFunction;
}

const CHAIN_UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
]);
const DNS_CODES = new Set(['ENOTFOUND', 'EAI_NONAME', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NODATA']);

function untrustedMessage(code: string, trust: PceTrust, identity: Error | undefined): string {
  const against = trust === 'public-roots' ? 'the public root CAs' : 'the trust anchors';
  if (CHAIN_UNTRUSTED.has(code)) return `the PCE's certificate chain does not lead to a CA among ${against} (${code})`;
  if (code === 'CERT_HAS_EXPIRED') return `a certificate in the PCE's chain has expired (${code})`;
  if (code === 'CERT_NOT_YET_VALID') return `a certificate in the PCE's chain is not valid yet (${code}): check the clocks`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `the PCE's certificate is not for this host name (${identity?.message ?? code})`;
  return `the PCE's certificate chain does not verify against ${against} (${code})`;
}

function unreachableMessage(code: string, target: string, host: string, detail: string): string {
  if (DNS_CODES.has(code)) return `the name ${host} does not resolve (${code}${code === 'EAI_AGAIN' ? ': the resolver failed or timed out' : ''})`;
  if (code === 'ECONNREFUSED') return `connection refused at ${target}: nothing listens on that port, or a firewall rejects the connection`;
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return `no route to ${target} (${code})`;
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECLOSED') {
    return `${target} closed the connection during the TLS handshake (${code}): the service on that port may not be the PCE, or it refused this client's TLS versions`;
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER') return `connected to ${target}, but what answers there does not speak TLS (${code}; plain HTTP?)`;
  if (code.startsWith('ERR_SSL') || code === 'EPROTO') return `connected to ${target}, but the TLS handshake failed (${code})`;
  return `${target} cannot be reached (${code}: ${detail})`;
}

let publicRoots: { pems: readonly string[]; fingerprints: ReadonlySet<string> } | undefined;

/** Node's bundled Mozilla roots: public by definition, the same everywhere, unaffected by NODE_EXTRA_CA_CERTS. */
function publicRootStore(): { pems: readonly string[]; fingerprints: ReadonlySet<string> } {
  publicRoots ??= { pems: tls.rootCertificates, fingerprints: fingerprintsOf(tls.rootCertificates) };
  return publicRoots;
}

function fingerprintsOf(pems: readonly string[]): Set<string> {
  const set = new Set<string>();
  for (const pem of pems) {
    try {
      set.add(new X509Certificate(pem).fingerprint256);
    } catch {
      // not a certificate: it cannot anchor anything either
    }
  }
  return set;
}

function peerChain(socket: tls.TLSSocket, anchors: ReadonlySet<string>): PeerCertificate[] {
  const chain: PeerCertificate[] = [];
  const seen = new Set<string>();
  let peer: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (peer?.raw !== undefined && chain.length < 10) {
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(peer.raw);
    } catch {
      break;
    }
    if (seen.has(x509.fingerprint256)) break; // a root links to itself
    seen.add(x509.fingerprint256);
    const { subject, issuer, notBefore, notAfter, fingerprint256 } = certificateFacts(x509);
    chain.push({
      subject,
      issuer,
      notBefore,
      notAfter,
      fingerprint256,
      ...(x509.subjectAltName ? { subjectAltName: x509.subjectAltName } : {}),
      inTrustAnchors: anchors.has(fingerprint256),
    });
    peer = peer.issuerCertificate;
  }
  return chain;
}

function probe(address: PceAddress, ca: readonly string[], anchors: ReadonlySet<string>, trust: PceTrust, options: ProbeOptions): Promise<PceProbe> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const connectHost = options.connectHost ?? address.host;
  const checkedAt = new Date().toISOString();
  const base = { target: address.target, trust, timeoutMs, checkedAt };
  return new Promise<PceProbe>((resolve) => {
    let done = false;
    let socket: tls.TLSSocket | undefined;
    let phase: 'lookup' | 'connect' | 'handshake' = isIP(connectHost) !== 0 ? 'connect' : 'lookup';
    let identityError: Error | undefined;
    const finish = (result: Omit<PceProbe, keyof typeof base>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve({ ...base, ...result });
    };
    const timer = setTimeout(() => {
      const message =
        phase === 'lookup'
          ? `no DNS answer for ${address.host} within ${timeoutMs} ms`
          : phase === 'connect'
            ? `no TCP connection to ${address.target} within ${timeoutMs} ms: packets are dropped (a firewall) or nothing answers at that address`
            : `TCP connected to ${address.target}, but no TLS handshake within ${timeoutMs} ms: the service on that port may not speak TLS, or a proxy holds the connection`;
      finish({ outcome: 'unreachable', code: 'ETIMEDOUT', message, chain: [], phase });
    }, timeoutMs);
    try {
      socket = tls.connect({
        host: connectHost,
        port: address.port,
        // SNI carries names only (RFC 6066); for an IP address the certificate's IP SAN is checked.
        ...(address.ip ? {} : { servername: address.host }),
        ca: [...ca],
        // Verification is read from the completed handshake (socket.authorized), so that an
        // untrusted PCE still shows its chain; nothing is sent before the socket is closed.
        rejectUnauthorized: false,
        checkServerIdentity: (_name, cert) => {
          identityError = tls.checkServerIdentity(address.host, cert);
          return identityError;
        },
        ...(options.lookup ? { lookup: options.lookup } : {}),
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'ERR_PROBE';
      finish({ outcome: 'unreachable', code, message: unreachableMessage(code, address.target, address.host, (error as Error).message), chain: [] });
      return;
    }
    const s = socket;
    s.once('lookup', () => (phase = 'connect'));
    s.once('connect', () => (phase = 'handshake'));
    s.once('secureConnect', () => {
      let chain: PeerCertificate[] = [];
      try {
        chain = peerChain(s, anchors);
      } catch {
        // the verdict stands without the chain
      }
      if (s.authorized) {
        finish({ outcome: 'trusted', message: `the PCE's certificate chain verifies for ${address.host}`, chain });
        return;
      }
      // Node sets authorizationError to the error's code (a string), whatever its type says.
      const reason = s.authorizationError as unknown;
      const code = typeof reason === 'string' ? reason : ((reason as NodeJS.ErrnoException | undefined)?.code ?? 'UNVERIFIED');
      finish({ outcome: 'untrusted', code, message: untrustedMessage(code, trust, identityError), chain });
    });
    s.on('error', (error: NodeJS.ErrnoException) => {
      const code = error.code ?? 'ERR_TLS';
      finish({ outcome: 'unreachable', code, message: unreachableMessage(code, address.target, address.host, error.message), chain: [] });
    });
    s.once('close', () => finish({ outcome: 'unreachable', code: 'ECLOSED', message: unreachableMessage('ECLOSED', address.target, address.host, 'closed'), chain: [] }));
  });
}

/**
 * A TLS handshake with the PCE trusting only `trustAnchors` (PEM; unparsable entries are left
 * out). Bounded by timeoutMs; never throws.
 */
export function probePce(address: PceAddress, options: ProbeOptions & { trustAnchors: readonly string[] }): Promise<PceProbe> {
  const pems: string[] = [];
  const fingerprints = new Set<string>();
  for (const pem of options.trustAnchors) {
    try {
      const cert = new X509Certificate(pem);
      pems.push(cert.toString());
      fingerprints.add(cert.fingerprint256);
    } catch {
      // checkRootCa reports it; it can anchor nothing
    }
  }
  return probe(address, pems, fingerprints, 'trust-anchors', options);
}

/**
 * The same handshake trusting only the public root CAs (Node's bundled Mozilla store, not the
 * host's, which may hold private CAs): "trusted" means no root CA ConfigMap is needed.
 */
export function probePublicTrust(address: PceAddress, options: ProbeOptions = {}): Promise<PceProbe> {
  const roots = publicRootStore();
  return probe(address, roots.pems, roots.fingerprints, 'public-roots', options);
}

const CHECKED_FROM =
  'nodeprep checks from the aggregator\'s pod; Kubelink runs in a pod and the C-VEN in the host network of each node, so their way out ' +
  '(egress NetworkPolicy, proxy, node firewall) may differ: test from a node too, e.g. `curl -sv --max-time 10 -o /dev/null https://<pce_url>/`.';


function unreachableRemediation(probe: PceProbe, host: string): string {
  const code = probe.code ?? '';
  let fix: string;
  if (DNS_CODES.has(code) || probe.phase === 'lookup') {
    fix =
      `Check the host name in pce_url (illumio-values.yaml) and that the cluster's DNS resolves it: ` +
      `\`kubectl run dnscheck -it --rm --restart=Never --image=busybox:1.36 -- nslookup ${host}\`. A name known only to a node's /etc/hosts is not seen by pods.`;
  } else if (code === 'ECONNREFUSED') {
    fix = 'Check the port in pce_url (Illumio\'s examples use 8443; without a port 443 is assumed) and that the PCE\'s front end is up.';
  } else if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    fix = 'A firewall or network policy drops the traffic between the cluster and the PCE, or the address is wrong; check the route and the firewall rules for this port.';
  } else {
    fix = 'Something other than the PCE may answer on that port (a proxy or load balancer that does not pass TLS through): check what listens there.';
  }
  return `${fix} This is not a certificate problem: no certificate was checked. ${CHECKED_FROM}`;
}

function untrustedRemediation(probe: PceProbe, location: RootCaLocation, address: PceAddress): string {
  const code = probe.code ?? '';
  const sClient = `openssl s_client -connect ${address.target} ${address.ip ? '' : `-servername ${address.host} `}-showcerts </dev/null`;
  if (code === 'CERT_HAS_EXPIRED') {
    return 'Renew the expired certificate on the PCE (evidence.chain has each notAfter; an expired intermediate is renewed by the PKI team). Nothing in the ConfigMap fixes an expired PCE certificate.';
  }
  if (code === 'CERT_NOT_YET_VALID') return 'Check the clocks of the PCE, the cluster\'s nodes and the issuing CA (NTP): a certificate is used before its notBefore.';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return (
      `pce_url must name the PCE by a name its certificate carries in subjectAltName (evidence.chain[0].subjectAltName; \`${sClient} | openssl x509 -noout -ext subjectAltName\`): ` +
      'use that name in pce_url (illumio-values.yaml and nodeprep\'s setting), or have the certificate reissued with this one. The Common Name is not used for the check.'
    );
  }
  const top = probe.chain[probe.chain.length - 1];
  // OpenSSL does not end a chain at a CA that is not self-signed: the guide asks for the root.
  const intermediateOnly =
    code === 'UNABLE_TO_GET_ISSUER_CERT' && probe.chain.some((c) => c.inTrustAnchors && c.subject !== c.issuer)
      ? 'The ConfigMap holds an intermediate CA of the PCE\'s chain, not the root it leads to: add the root. '
      : '';
  return (
    intermediateOnly +
    `Put the root CA that signed the PCE's chain${top ? ` (the chain the PCE sent ends with a certificate issued by "${top.issuer}")` : ''} in ConfigMap ` +
    `${location.namespace}/${location.name}: \`${replaceCommand(location)}\`. ` +
    `Check the file first: \`${sClient.replace(' -showcerts', ' -CAfile root-ca.crt')} | grep "Verify return code"\` must say 0 (ok). ` +
    'If the chain has only the PCE\'s own certificate and its issuer is an intermediate CA, the PCE does not send the intermediate: configure the PCE with the full chain. ' +
    RESTART_AFTER_CHANGE
  );
}

/**
 * The findings of one probe. trusted: none. unreachable: ILLUMIO_PCE_UNREACHABLE. untrusted with the
 * ConfigMap's certificates: ILLUMIO_PCE_TLS_UNTRUSTED. untrusted against the public roots: none here,
 * because that only means a ConfigMap is needed, which the ILLUMIO_ROOT_CA_MISSING finding says
 * (pass the probe to checkRootCa).
 */
export function pceFindings(probe: PceProbe, context: { location: RootCaLocation; address: PceAddress }): FindingDraft[] {
  const chain = probe.chain.map(({ subject, issuer, notBefore, notAfter, fingerprint256, subjectAltName, inTrustAnchors }) => ({
    subject,
    issuer,
    notBefore,
    notAfter,
    fingerprint256,
    ...(subjectAltName ? { subjectAltName } : {}),
    inTrustAnchors,
  }));
  if (probe.outcome === 'unreachable') {
    return [
      makeFinding('ILLUMIO_PCE_UNREACHABLE', [probe.target], {
        nodes: [],
        message: `the PCE at ${probe.target} cannot be reached from the aggregator: ${probe.message}`,
        remediation: unreachableRemediation(probe, context.address.host),
        evidence: { target: probe.target, code: probe.code, ...(probe.phase ? { phase: probe.phase } : {}), timeoutMs: probe.timeoutMs, checkedAt: probe.checkedAt },
      }),
    ];
  }
  if (probe.outcome === 'untrusted' && probe.trust === 'trust-anchors') {
    const where = `${context.location.namespace}/${context.location.name}`;
    return [
      makeFinding('ILLUMIO_PCE_TLS_UNTRUSTED', [probe.target], {
        nodes: [],
        message: `the PCE's certificate at ${probe.target} does not verify with the certificates of ConfigMap ${where}: ${probe.message}`,
        remediation: untrustedRemediation(probe, context.location, context.address),
        evidence: { target: probe.target, code: probe.code, configMap: where, chain, checkedAt: probe.checkedAt },
      }),
    ];
  }
  return [];
}
