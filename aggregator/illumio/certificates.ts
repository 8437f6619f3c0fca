// What nodeprep says about a certificate: the facts an admin compares with `openssl x509 -noout
// -subject -issuer -dates -fingerprint -sha256`, never the certificate itself. Shared by the root CA
// ConfigMap check and the PCE probe, so both describe certificates the same way.
import type { X509Certificate } from 'node:crypto';

export interface CertificateFacts {
  /** One line, in certificate order: "C=US, O=Example, CN=Example Root CA". */
  subject: string;
  issuer: string;
  /** ISO-8601. */
  notBefore: string;
  notAfter: string;
  /** SHA-256 of the DER, colon-separated upper-case hex, as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint256: string;
  /** basicConstraints CA:TRUE (node:crypto's X509Certificate.ca). */
  ca: boolean;
  /** Issued by itself: a root. */
  selfSigned: boolean;
}

/** Node prints a distinguished name one attribute per line; a finding wants it on one line. */
export function oneLineName(name: string): string {
  return name.split('\n').filter((part) => part !== '').join(', ');
}

export function certificateFacts(cert: X509Certificate): CertificateFacts {
  return {
    subject: oneLineName(cert.subject),
    issuer: oneLineName(cert.issuer),
    notBefore: cert.validFromDate.toISOString(),
    notAfter: cert.validToDate.toISOString(),
    fingerprint256: cert.fingerprint256,
    ca: cert.ca,
    selfSigned: cert.subject === cert.issuer && cert.checkIssued(cert),
  };
}
