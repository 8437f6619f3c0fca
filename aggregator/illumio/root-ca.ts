// The guide's root CA step: when the PCE's certificate is signed by a private CA, the admin puts
// that root CA in a ConfigMap (`kubectl -n illumio-system create configmap root-ca-config
// --from-file=root-ca.crt`), which Illumio's chart mounts for Kubelink and the C-VEN (values
// `extraVolumes` / `extraVolumeMounts`, mountPath /etc/pki/tls/ilo_certs/; illumio/helm-charts
// README, "Root CA Certificate"). Data in (the ConfigMap as the API has it, or its absence), verdicts
// out; the one I/O this needs, the PCE handshake, is in pce-tls.ts.
import { X509Certificate } from 'node:crypto';
import { makeFinding, type FindingDraft } from '../detect/finding.js';
import { certificateFacts, type CertificateFacts } from './certificates.js';
import type { PceProbe } from './pce-tls.js';

export interface RootCaLocation {
  namespace: string;
  name: string;
}

/** The guide's names; both are configurable (the guide lets the name follow the site's convention). */
export const DEFAULT_ROOT_CA_LOCATION: RootCaLocation = { namespace: 'illumio-system', name: 'root-ca-config' };
export const DEFAULT_EXPIRING_DAYS = 30;

/** The fields of the ConfigMap this check reads, as the API returns them (binaryData base64). */
export interface RootCaConfigMap extends RootCaLocation {
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
}

export interface CheckRootCaInput {
  /** Where the ConfigMap is expected: named in the findings even when it does not exist. */
  location: RootCaLocation;
  /** The ConfigMap at that location, or undefined when there is none. */
  configMap: RootCaConfigMap | undefined;
  now: Date;
  /** A CA expiring within this many days raises ILLUMIO_ROOT_CA_EXPIRING (default 30). */
  expiringDays?: number;
  /**
   * probePublicTrust's result, when the PCE URL is configured: whether the PCE's certificate
   * verifies against the public roots, which decides whether a missing ConfigMap matters. Only
   * a probe with trust 'public-roots' is read; anything else is ignored.
   */
  publicProbe?: PceProbe;
}

export type CertificateProblem = 'not-ca' | 'not-yet-valid' | 'expired' | 'expiring';

export interface RootCaCertificate extends CertificateFacts {
  /** The ConfigMap key (file name once mounted) and the certificate's place in it, from 1. */
  key: string;
  block: number;
  /** Whole days until notAfter, negative once expired. */
  daysLeft: number;
  problems: CertificateProblem[];
}

export interface UnparsableBlock {
  key: string;
  block: number;
  reason: string;
}

export interface RootCaCheck {
  /**
   * ok: the ConfigMap holds at least one certificate and none is unusable (an expiring CA is
   * still ok); missing: no ConfigMap; invalid: an ILLUMIO_ROOT_CA_INVALID finding was raised.
   */
  state: 'ok' | 'missing' | 'invalid';
  location: RootCaLocation;
  certificates: RootCaCertificate[];
  unparsable: UnparsableBlock[];
  /**
   * Every certificate that parsed, as PEM: what Kubelink and the C-VEN load from the mounted
   * ConfigMap, and so what probePce should trust. Expired and non-CA certificates stay in, so
   * the probe fails as the product would.
   */
  trustAnchors: string[];
  findings: FindingDraft[];
}

const DAY_MS = 86_400_000;

/** Said after every change of the ConfigMap; pce-tls.ts says it too. */
export const RESTART_AFTER_CHANGE =
  'Kubelink and the C-VEN may read the certificates only when they start: after a change, ' +
  '`kubectl -n illumio-system rollout restart deployment/illumio-kubelink daemonset/illumio-ven` (names and namespace as installed).';

const INSPECT = '`openssl x509 -in root-ca.crt -noout -subject -issuer -dates -fingerprint -sha256 -ext basicConstraints`';

function createCommand(location: RootCaLocation): string {
  return `kubectl -n ${location.namespace} create configmap ${location.name} --from-file=root-ca.crt`;
}

/** Creates or replaces the ConfigMap from root-ca.crt. */
export function replaceCommand(location: RootCaLocation): string {
  return `${createCommand(location)} --dry-run=client -o yaml | kubectl apply -f -`;
}

interface PemBlock {
  type: string;
  body: string;
  complete: boolean;
}

/**
 * The PEM blocks of a text, in order. A BEGIN line without its END line (before the next BEGIN
 * or the end of the text) is a block cut short, as a truncated copy-paste leaves it.
 */
export function pemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  const begin = /-----BEGIN ([A-Z0-9 ]+)-----/g;
  const starts: { type: string; index: number; bodyStart: number }[] = [];
  for (let m = begin.exec(text); m !== null; m = begin.exec(text)) starts.push({ type: m[1]!, index: m.index, bodyStart: m.index + m[0].length });
  starts.forEach((start, i) => {
    const limit = starts[i + 1]?.index ?? text.length;
    const endLine = `-----END ${start.type}-----`;
    const end = text.indexOf(endLine, start.bodyStart);
    const complete = end >= 0 && end < limit;
    blocks.push({ type: start.type, body: text.slice(start.bodyStart, complete ? end : limit).trim(), complete });
  });
  return blocks;
}

interface KeyText {
  key: string;
  text: string;
  /** binaryData that holds a DER certificate, not PEM. */
  der: boolean;
}

function keyTexts(configMap: RootCaConfigMap): KeyText[] {
  const keys: KeyText[] = [];
  for (const [key, text] of Object.entries(configMap.data ?? {})) keys.push({ key, text, der: false });
  for (const [key, base64] of Object.entries(configMap.binaryData ?? {})) {
    const bytes = Buffer.from(base64, 'base64');
    const text = bytes.toString('latin1');
    let der = false;
    if (!text.includes('-----BEGIN ')) {
      try {
        new X509Certificate(bytes);
        der = true;
      } catch {
        // neither PEM nor a DER certificate: nothing to read here
      }
    }
    keys.push({ key, text, der });
  }
  return keys.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * Whether `cert` leads, through certificates of `pool` that issued and signed each link, to a
 * self-signed one: the chain an OpenSSL client needs in its trust store (it does not stop at an
 * intermediate unless X509_V_FLAG_PARTIAL_CHAIN is set; openssl verify(1), -partial_chain).
 */
function chainsToRoot(cert: X509Certificate, pool: readonly X509Certificate[]): boolean {
  const seen = new Set<string>();
  for (let current = cert; !seen.has(current.fingerprint256); ) {
    seen.add(current.fingerprint256);
    if (current.subject === current.issuer && current.checkIssued(current)) return true;
    const issuer = pool.find((c) => c !== current && current.checkIssued(c) && current.verify(c.publicKey));
    if (!issuer) return false;
    current = issuer;
  }
  return false; // a loop of cross-signed CAs that ends nowhere
}

function pemOf(body: string): string {
  return `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
}

function describe(c: RootCaCertificate): Record<string, unknown> {
  return {
    key: c.key,
    block: c.block,
    subject: c.subject,
    issuer: c.issuer,
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    fingerprint256: c.fingerprint256,
    ca: c.ca,
    selfSigned: c.selfSigned,
  };
}

function missingFinding(input: CheckRootCaInput): FindingDraft {
  const { location } = input;
  const where = `${location.namespace}/${location.name}`;
  const probe = input.publicProbe?.trust === 'public-roots' ? input.publicProbe : undefined;
  const evidence: Record<string, unknown> = { configMap: where };
  if (probe) evidence.pce = { target: probe.target, outcome: probe.outcome, ...(probe.code ? { code: probe.code } : {}), chain: probe.chain.map((c) => ({ subject: c.subject, issuer: c.issuer })) };
  const howTo =
    `If the PCE's certificate is signed by a private CA, put that CA's root certificate (PEM; the root, not the PCE's own certificate nor an intermediate) in the ConfigMap: ` +
    `\`${createCommand(location)}\`, and reference it in illumio-values.yaml as Illumio's chart documents ` +
    `(extraVolumes: a configMap volume with name ${location.name}; extraVolumeMounts: mountPath /etc/pki/tls/ilo_certs/). ` +
    'Do not set ignore_cert: true instead: it turns off Kubelink\'s verification of the PCE.';
  if (probe?.outcome === 'trusted') {
    return makeFinding('ILLUMIO_ROOT_CA_MISSING', [location.namespace, location.name], {
      severity: 'info',
      nodes: [],
      message: `no ConfigMap ${where}, and none is needed: the PCE's certificate (${probe.target}) verifies against the public root CAs`,
      remediation: `Nothing to do. If the PCE's certificate is later reissued by a private CA, create the ConfigMap then: \`${createCommand(location)}\`.`,
      evidence,
    });
  }
  let message: string;
  if (probe?.outcome === 'untrusted') {
    message =
      `no ConfigMap ${where}, and the PCE's certificate (${probe.target}) does not verify against the public root CAs (${probe.code ?? 'unverified'}): ` +
      'it is signed by a private CA, so Kubelink and the C-VEN need that root CA in this ConfigMap';
  } else if (probe?.outcome === 'unreachable') {
    message = `no ConfigMap ${where}; whether one is needed is unknown: the PCE (${probe.target}) could not be reached to see who signed its certificate (${probe.code ?? 'unreachable'})`;
  } else {
    message = `no ConfigMap ${where} with the root CA of the PCE's certificate; it is needed when that certificate is signed by a private CA (give nodeprep the PCE URL, pce_url of illumio-values.yaml, to check)`;
  }
  return makeFinding('ILLUMIO_ROOT_CA_MISSING', [location.namespace, location.name], {
    nodes: [],
    message,
    remediation: `${howTo} If the PCE's certificate is from a public CA, no ConfigMap is needed.`,
    evidence,
  });
}

/**
 * Checks the root CA ConfigMap: every PEM CERTIFICATE block of every key (data and binaryData)
 * must parse and be a CA certificate valid now; a CA expiring within `expiringDays` is a warning.
 * Pure: `now` is an input.
 */
export function checkRootCa(input: CheckRootCaInput): RootCaCheck {
  const { location, configMap, now } = input;
  const expiringDays = input.expiringDays ?? DEFAULT_EXPIRING_DAYS;
  const where = `${location.namespace}/${location.name}`;
  if (configMap === undefined) {
    return { state: 'missing', location, certificates: [], unparsable: [], trustAnchors: [], findings: [missingFinding(input)] };
  }

  const certificates: RootCaCertificate[] = [];
  const parsed: X509Certificate[] = []; // in the order of `certificates`
  const unparsable: UnparsableBlock[] = [];
  const trustAnchors: string[] = [];
  const keys = keyTexts(configMap);
  for (const { key, text } of keys) {
    let block = 0;
    for (const pem of pemBlocks(text)) {
      if (!pem.type.endsWith('CERTIFICATE')) continue; // keys, requests, CRLs: not ours to judge
      block++;
      if (pem.type !== 'CERTIFICATE') {
        unparsable.push({ key, block, reason: `a "${pem.type}" block, not "CERTIFICATE" (convert it with \`openssl x509 -in <file> -out root-ca.crt\`)` });
        continue;
      }
      if (!pem.complete) {
        unparsable.push({ key, block, reason: 'the block has no "-----END CERTIFICATE-----" line: the text was cut short' });
        continue;
      }
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(pemOf(pem.body));
      } catch (error) {
        unparsable.push({ key, block, reason: `the block does not parse as an X.509 certificate (${(error as Error).message})` });
        continue;
      }
      trustAnchors.push(cert.toString());
      const facts = certificateFacts(cert);
      const notBefore = cert.validFromDate.getTime();
      const notAfter = cert.validToDate.getTime();
      const problems: CertificateProblem[] = [];
      if (!facts.ca) problems.push('not-ca');
      if (now.getTime() < notBefore) problems.push('not-yet-valid');
      if (now.getTime() > notAfter) problems.push('expired');
      else if (facts.ca && notAfter - now.getTime() <= expiringDays * DAY_MS) problems.push('expiring');
      certificates.push({ key, block, ...facts, daysLeft: Math.floor((notAfter - now.getTime()) / DAY_MS), problems });
      parsed.push(cert);
    }
  }

  const findings: FindingDraft[] = [];
  if (certificates.length === 0 && unparsable.length === 0) {
    const derKeys = keys.filter((k) => k.der).map((k) => k.key);
    findings.push(
      makeFinding('ILLUMIO_ROOT_CA_INVALID', [location.namespace, location.name, 'no-certificate'], {
        nodes: [],
        message:
          `ConfigMap ${where} holds no PEM certificate (keys: ${keys.length === 0 ? 'none' : keys.map((k) => k.key).join(', ')})` +
          (derKeys.length > 0 ? `; ${derKeys.join(', ')} holds a DER certificate, which must be converted to PEM` : ''),
        remediation:
          (derKeys.length > 0 ? 'Convert the certificate to PEM: `openssl x509 -inform der -in root-ca.der -out root-ca.crt`. ' : '') +
          `Recreate the ConfigMap from the root CA in PEM ("-----BEGIN CERTIFICATE-----"): \`${replaceCommand(location)}\`. ${RESTART_AFTER_CHANGE}`,
        evidence: { configMap: where, keys: keys.map((k) => k.key), ...(derKeys.length > 0 ? { derKeys } : {}) },
      }),
    );
  }
  for (const u of unparsable) {
    findings.push(
      makeFinding('ILLUMIO_ROOT_CA_INVALID', [location.namespace, location.name, u.key, `block-${u.block}`], {
        nodes: [],
        message: `ConfigMap ${where}, key ${u.key}, certificate ${u.block}: ${u.reason}`,
        remediation: `Check the file with ${INSPECT}, then recreate the ConfigMap from it: \`${replaceCommand(location)}\`. ${RESTART_AFTER_CHANGE}`,
        evidence: { configMap: where, key: u.key, block: u.block, problem: u.reason },
      }),
    );
  }
  for (const c of certificates) {
    const unusable = c.problems.filter((p) => p !== 'expiring');
    if (unusable.length > 0) {
      const why: string[] = [];
      if (unusable.includes('not-ca')) why.push('it is not a CA certificate (basicConstraints CA:TRUE is missing)');
      if (unusable.includes('not-yet-valid')) why.push(`it is not valid before ${c.notBefore}`);
      if (unusable.includes('expired')) why.push(`it expired on ${c.notAfter}`);
      const fix: string[] = [];
      if (unusable.includes('not-ca')) {
        fix.push(
          'A certificate without CA:TRUE is usually the PCE\'s own certificate or another leaf: the ConfigMap needs the root CA that signed the PCE\'s chain ' +
            '(the last certificate `openssl s_client -connect <pce host:port> -showcerts </dev/null` prints, or ask the PKI team).',
        );
      }
      if (unusable.includes('not-yet-valid')) fix.push('Check the clock of the machine that issued it and of the cluster\'s nodes (NTP).');
      if (unusable.includes('expired')) fix.push('Replace it with the CA\'s current certificate; if that one is already in the ConfigMap (a rotation), remove the expired one.');
      findings.push(
        makeFinding('ILLUMIO_ROOT_CA_INVALID', [location.namespace, location.name, c.key, c.fingerprint256], {
          nodes: [],
          message: `ConfigMap ${where}, key ${c.key}: certificate "${c.subject}" cannot be a trust anchor: ${why.join('; ')}`,
          remediation: `${fix.join(' ')} Check a file with ${INSPECT}, then \`${replaceCommand(location)}\`. ${RESTART_AFTER_CHANGE}`,
          evidence: { configMap: where, ...describe(c), problems: unusable },
        }),
      );
    }
    if (c.problems.includes('expiring')) {
      findings.push(
        makeFinding('ILLUMIO_ROOT_CA_EXPIRING', [location.namespace, location.name, c.key, c.fingerprint256], {
          nodes: [],
          message: `ConfigMap ${where}, key ${c.key}: CA certificate "${c.subject}" expires on ${c.notAfter} (in ${c.daysLeft} days)`,
          remediation:
            'Get the CA\'s new certificate from the PKI team and add it to the ConfigMap next to the current one (several certificates can follow each other in one file) ' +
            `before ${c.notAfter}: \`cat current-root.crt new-root.crt > root-ca.crt && ${replaceCommand(location)}\`. ` +
            `Keep both until the PCE's certificate is reissued under the new CA. ${RESTART_AFTER_CHANGE}`,
          evidence: { configMap: where, ...describe(c), daysLeft: c.daysLeft, expiringDays },
        }),
      );
    }
  }
  certificates.forEach((c, i) => {
    // An intermediate CA whose chain up to a self-signed root is not in the ConfigMap. Expired or
    // otherwise unusable ones have their ILLUMIO_ROOT_CA_INVALID already.
    if (!c.ca || c.selfSigned || c.problems.some((p) => p !== 'expiring') || chainsToRoot(parsed[i]!, parsed)) return;
    findings.push(
      makeFinding('ILLUMIO_ROOT_CA_INTERMEDIATE', [location.namespace, location.name, c.key, c.fingerprint256], {
        nodes: [],
        message:
          `ConfigMap ${where}, key ${c.key}: "${c.subject}" is an intermediate CA (issued by "${c.issuer}"), not the root CA the guide asks for, ` +
          'and the root it leads to is not in the ConfigMap: clients built on OpenSSL will not trust the PCE through it',
        remediation:
          `Add the root CA "${c.issuer}" leads to (or put it in place of the intermediate): \`cat intermediate.crt root.crt > root-ca.crt && ${replaceCommand(location)}\`. ` +
          'Go\'s TLS takes any certificate it is given as a trust anchor, so a Go client may accept the intermediate alone; OpenSSL, by default, ' +
          'ends a chain only at a self-signed root (X509_V_FLAG_PARTIAL_CHAIN is off), so an OpenSSL client rejects the PCE with "unable to get issuer certificate". ' +
          `Check with \`openssl verify -CAfile root-ca.crt pce.crt\` (the PCE's certificate), which must say OK. ${RESTART_AFTER_CHANGE}`,
        evidence: { configMap: where, ...describe(c) },
      }),
    );
  });
  const invalid = findings.some((f) => f.code === 'ILLUMIO_ROOT_CA_INVALID');
  return { state: invalid ? 'invalid' : 'ok', location, certificates, unparsable, trustAnchors, findings };
}
