// The root CA step as one call: the ConfigMap check, and with a PCE URL the handshake that shows
// whether the ConfigMap verifies the PCE, or, without a ConfigMap, whether one is needed. Run it at
// start, when the ConfigMap changes and every 10 minutes (issue 10); each run is bounded by the
// probe's timeout and never throws.
import type { FindingDraft } from '../detect/finding.js';
import { pceFindings, probePce, probePublicTrust, type PceAddress, type PceProbe, type ProbeOptions } from './pce-tls.js';
import { checkRootCa, type RootCaCheck, type RootCaConfigMap, type RootCaLocation } from './root-ca.js';

export interface IllumioTrustInput {
  location: RootCaLocation;
  configMap: RootCaConfigMap | undefined;
  /** parsePceUrl's address of the configured pce_url; without it no handshake is made. */
  pce?: PceAddress;
  now: Date;
  expiringDays?: number;
  probeOptions?: ProbeOptions;
}

export interface IllumioTrust {
  rootCa: RootCaCheck;
  /** The handshake made, if any: with the ConfigMap's certificates, or with the public roots when there is no ConfigMap. */
  probe?: PceProbe;
  /** Every finding of the step: the ConfigMap's and the PCE's. */
  findings: FindingDraft[];
}

/** The probes, replaceable for tests. */
export interface Probes {
  probePce: typeof probePce;
  probePublicTrust: typeof probePublicTrust;
}

export async function checkIllumioTrust(input: IllumioTrustInput, probes: Probes = { probePce, probePublicTrust }): Promise<IllumioTrust> {
  const { pce, probeOptions = {} } = input;
  let rootCa = checkRootCa(input);
  if (pce === undefined) return { rootCa, findings: rootCa.findings };
  let probe: PceProbe | undefined;
  if (rootCa.state === 'missing') {
    // No ConfigMap: Kubelink and the C-VEN would trust what their images trust. The public roots
    // stand for that; trusted there means no ConfigMap is needed (ILLUMIO_ROOT_CA_MISSING at info).
    probe = await probes.probePublicTrust(pce, probeOptions);
    rootCa = checkRootCa({ ...input, publicProbe: probe });
  } else if (rootCa.trustAnchors.length > 0) {
    probe = await probes.probePce(pce, { ...probeOptions, trustAnchors: rootCa.trustAnchors });
  }
  // Else the ConfigMap has no certificate that parses: ILLUMIO_ROOT_CA_INVALID says so, and a
  // handshake trusting nothing would only repeat it.
  const findings = [...rootCa.findings, ...(probe ? pceFindings(probe, { location: input.location, address: pce }) : [])];
  return { rootCa, ...(probe ? { probe } : {}), findings };
}

/** The facts readiness wants from a check (assessReadiness's rootCa). */
export function trustFacts(trust: IllumioTrust): { state: RootCaCheck['state']; pceOutcome?: PceProbe['outcome'] } {
  return { state: trust.rootCa.state, ...(trust.probe ? { pceOutcome: trust.probe.outcome } : {}) };
}
