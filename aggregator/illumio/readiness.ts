// "May I install C-VEN now, and with which values?" The guide's four steps before C-VEN and
// Kubelink go in, in its order, each ready / not-ready / unknown, decided from the active findings
// and a few facts (design.md section 9; issue 10). Pure: findings and facts in, answer out.
import type { FindingCode, Severity } from '../../protocol/findings.js';
import type { IllumioSizing, Readiness, ReadinessState, ReadinessStep, ReadinessStepName } from '../../protocol/illumio.js';
import type { PceProbe } from './pce-tls.js';
import type { RootCaCheck } from './root-ca.js';

interface StepRule {
  title: string;
  /** A finding of these codes makes the step not-ready; at severity info it only qualifies a ready step. */
  blocks: readonly FindingCode[];
  /** A finding of these codes leaves the step unknown (unless something blocks it). */
  leavesOpen: readonly FindingCode[];
  /** Shown with the step, change nothing. */
  qualifies: readonly FindingCode[];
}

/**
 * Which finding decides which step, and how. Why each is where it is:
 *
 * machine-ids
 * - blocks: MACHINE_ID_DUPLICATE and MACHINE_ID_INVALID are the step itself; KUBELET_MACHINE_ID_STALE
 *   means a fix is half done (the kubelet still reports the old ID until restarted).
 * - open: NODE_NO_AGENT and NODE_STALE: a node whose ID nodeprep has not seen (lately) may be a clone.
 * - qualifies: MACHINE_ID_DBUS_MISMATCH (the kubelet and the C-VEN read /etc/machine-id, which is
 *   valid and unique, or another finding would block) and SYSTEM_UUID_DUPLICATE (cloned VMs: a hint,
 *   info, not a machine-ID clash).
 *
 * root-ca
 * - blocks: ILLUMIO_ROOT_CA_MISSING (at warning; at info it says no ConfigMap is needed, which is
 *   ready), ILLUMIO_ROOT_CA_INVALID, ILLUMIO_PCE_TLS_UNTRUSTED (the ConfigMap does not verify the PCE),
 *   ILLUMIO_ROOT_CA_INTERMEDIATE (an intermediate without its root: the guide asks for the root,
 *   and OpenSSL clients need it, although Go clients may do without).
 * - open: ILLUMIO_PCE_UNREACHABLE: whether the certificates verify the PCE could not be checked.
 * - qualifies: ILLUMIO_ROOT_CA_EXPIRING: it works today.
 *
 * sizing
 * - blocks: ILLUMIO_UNDERSIZED (C-VEN or Kubelink already deployed below the tier).
 * - Unknown inputs do not make the step unknown: the admin's question is "with which values?", and
 *   the answer for the known inputs is a floor the guide itself says to raise from (limits at 80%
 *   of usage). Policy size is known only to the PCE and usually unknown; the reason names it with
 *   "the tier may be higher". The step is unknown only when no input is known, or when the cluster
 *   is beyond the published guidance (the guide has no values to give).
 *
 * calico-append
 * - blocks: CALICO_INSERT_MODE, CALICO_ILLUMIO_CONFLICT, CALICO_MODE_MIXED, CALICO_OUT_OF_SYNC
 *   (not in Append on some chain), CALICO_CONFIG_NOT_APPEND (configured for Insert: the next Felix
 *   start undoes Append), CALICO_CONFIG_DRIFT (configuration and rules disagree: not settled).
 * - open: IPTABLES_INCOMPLETE and AGENT_COLLECTION_ERROR of the iptables or nft source (the mode
 *   could not be read), NODE_NO_AGENT and NODE_STALE (not seen), CALICO_NFT_DATAPLANE (the Append
 *   step is written for the iptables dataplane; Illumio must confirm coexistence with nftables).
 * - qualifies: IPTABLES_MIXED_BACKENDS, FOREIGN_HEAD_RULE, CALICO_STALE_CHAINS: worth reading, not
 *   about Calico's mode.
 *
 * Outside the steps, ILLUMIO_SERVER_VEN stops an installation too (Illumio supports only the C-VEN
 * on Kubernetes nodes): it is listed in otherBlockers and keeps `ready` false.
 */
export const READINESS_RULES: Record<ReadinessStepName, StepRule> = {
  'machine-ids': {
    title: 'Unique machine IDs',
    blocks: ['MACHINE_ID_DUPLICATE', 'MACHINE_ID_INVALID', 'KUBELET_MACHINE_ID_STALE'],
    leavesOpen: ['NODE_NO_AGENT', 'NODE_STALE'],
    qualifies: ['MACHINE_ID_DBUS_MISMATCH', 'SYSTEM_UUID_DUPLICATE'],
  },
  'root-ca': {
    title: 'Root CA ConfigMap',
    blocks: ['ILLUMIO_ROOT_CA_MISSING', 'ILLUMIO_ROOT_CA_INVALID', 'ILLUMIO_PCE_TLS_UNTRUSTED', 'ILLUMIO_ROOT_CA_INTERMEDIATE'],
    leavesOpen: ['ILLUMIO_PCE_UNREACHABLE'],
    qualifies: ['ILLUMIO_ROOT_CA_EXPIRING'],
  },
  sizing: {
    title: 'Resource sizing',
    blocks: ['ILLUMIO_UNDERSIZED'],
    leavesOpen: [],
    qualifies: [],
  },
  'calico-append': {
    title: 'Calico in Append mode',
    blocks: ['CALICO_INSERT_MODE', 'CALICO_ILLUMIO_CONFLICT', 'CALICO_MODE_MIXED', 'CALICO_OUT_OF_SYNC', 'CALICO_CONFIG_NOT_APPEND', 'CALICO_CONFIG_DRIFT'],
    leavesOpen: ['IPTABLES_INCOMPLETE', 'AGENT_COLLECTION_ERROR', 'NODE_NO_AGENT', 'NODE_STALE', 'CALICO_NFT_DATAPLANE'],
    qualifies: ['IPTABLES_MIXED_BACKENDS', 'FOREIGN_HEAD_RULE', 'CALICO_STALE_CHAINS'],
  },
};

export const OTHER_BLOCKERS: readonly FindingCode[] = ['ILLUMIO_SERVER_VEN'];

/** The guide's order. */
export const READINESS_STEPS: readonly ReadinessStepName[] = ['machine-ids', 'root-ca', 'sizing', 'calico-append'];

// A few words per code for the step's one-line reason.
const PHRASE: Partial<Record<FindingCode, string>> = {
  MACHINE_ID_DUPLICATE: 'nodes share a machine ID',
  MACHINE_ID_INVALID: 'a node has no valid machine ID',
  KUBELET_MACHINE_ID_STALE: 'a kubelet still reports an old machine ID (restart it)',
  NODE_NO_AGENT: 'a node has no nodeprep agent reporting',
  NODE_STALE: 'a node stopped reporting',
  ILLUMIO_ROOT_CA_MISSING: 'no root CA ConfigMap',
  ILLUMIO_ROOT_CA_INVALID: 'the root CA ConfigMap holds no usable CA certificate',
  ILLUMIO_ROOT_CA_INTERMEDIATE: 'the root CA ConfigMap holds an intermediate CA without its root',
  ILLUMIO_PCE_TLS_UNTRUSTED: 'the PCE\'s certificate does not verify with the ConfigMap\'s CA',
  ILLUMIO_PCE_UNREACHABLE: 'the PCE could not be reached to check its certificate',
  ILLUMIO_UNDERSIZED: 'C-VEN or Kubelink is deployed with less than the tier\'s resources',
  CALICO_INSERT_MODE: 'Calico is in Insert mode',
  CALICO_ILLUMIO_CONFLICT: 'Calico in Insert mode contends with Illumio',
  CALICO_MODE_MIXED: 'nodes disagree on Calico\'s mode',
  CALICO_OUT_OF_SYNC: 'Calico\'s rules are neither first nor last in a chain',
  CALICO_CONFIG_NOT_APPEND: 'Calico is configured for Insert mode',
  CALICO_CONFIG_DRIFT: 'Calico\'s configuration and its rules disagree',
  IPTABLES_INCOMPLETE: 'a node\'s iptables rules could not be read whole',
  AGENT_COLLECTION_ERROR: 'an agent could not read the firewall rules',
  CALICO_NFT_DATAPLANE: 'Calico uses its nftables dataplane (confirm coexistence with Illumio)',
};

/** The fields of an active finding readiness reads (a Finding or a FindingDraft will do). */
export interface ReadinessFinding {
  id: string;
  code: FindingCode;
  severity: Severity;
  evidence?: Record<string, unknown>;
}

export interface ReadinessInput {
  /** The active findings of this cluster (not those of other clusters reporting to the same aggregator). */
  findings: readonly ReadinessFinding[];
  /** The aggregator reads the cluster's API. Off: root CA and sizing cannot be checked (unknown). */
  clusterView: boolean;
  /**
   * reporting: the cluster's nodes with a live (not stale) report; inCluster: the Node objects in
   * the API, absent when the cluster view is off.
   */
  nodes: { reporting: number; inCluster?: number };
  /**
   * Whether Calico is the network plugin: in-use when a node shows Calico's hooks or nft table, or
   * the API has calico-node; not-in-use when the cluster view sees neither calico-node nor
   * FelixConfiguration and no node shows Calico; unknown before either could tell.
   */
  calico: 'in-use' | 'not-in-use' | 'unknown';
  /** checkRootCa's state, and the PCE probe's outcome when a PCE URL is configured; absent: not checked yet. */
  rootCa?: { state: RootCaCheck['state']; pceOutcome?: PceProbe['outcome'] };
  /** decideSizing's answer; absent: not computed yet. */
  sizing?: IllumioSizing;
}

interface Matched {
  blocking: ReadinessFinding[];
  open: ReadinessFinding[];
  qualifying: ReadinessFinding[];
}

function counts(finding: ReadinessFinding, step: ReadinessStepName): boolean {
  // Only the sources Calico's mode is read from leave the Calico step open.
  if (step === 'calico-append' && finding.code === 'AGENT_COLLECTION_ERROR') {
    const source = finding.evidence?.source;
    return source === undefined || source === 'iptables' || source === 'nft';
  }
  return true;
}

function match(input: ReadinessInput, step: ReadinessStepName): Matched {
  const rule = READINESS_RULES[step];
  const m: Matched = { blocking: [], open: [], qualifying: [] };
  for (const f of input.findings) {
    if (!counts(f, step)) continue;
    if (rule.blocks.includes(f.code)) (f.severity === 'info' ? m.qualifying : m.blocking).push(f);
    else if (rule.leavesOpen.includes(f.code)) m.open.push(f);
    else if (rule.qualifies.includes(f.code)) m.qualifying.push(f);
  }
  return m;
}

function ids(findings: readonly ReadinessFinding[]): string[] {
  return [...new Set(findings.map((f) => f.id))];
}

function phrases(findings: readonly ReadinessFinding[]): string {
  const seen = new Map<FindingCode, number>();
  for (const f of findings) seen.set(f.code, (seen.get(f.code) ?? 0) + 1);
  return [...seen].map(([code, n]) => `${PHRASE[code] ?? code}${n > 1 ? ` (${n} findings)` : ''}`).join('; ');
}

function step(name: ReadinessStepName, state: ReadinessState, reason: string, findings: readonly ReadinessFinding[]): ReadinessStep {
  return { step: name, title: READINESS_RULES[name].title, state, reason, findings: ids(findings) };
}

/** Why the node-based steps cannot be ready yet, if they cannot: some nodes not seen. */
function coverageGap(input: ReadinessInput): string | undefined {
  const { reporting, inCluster } = input.nodes;
  if (reporting === 0) return 'no node has reported yet';
  if (inCluster !== undefined && reporting < inCluster) return `${reporting} of ${inCluster} nodes report; the others have not been checked`;
  return undefined;
}

function machineIds(input: ReadinessInput): ReadinessStep {
  const m = match(input, 'machine-ids');
  if (m.blocking.length > 0) return step('machine-ids', 'not-ready', phrases(m.blocking), m.blocking);
  if (m.open.length > 0) return step('machine-ids', 'unknown', phrases(m.open), m.open);
  const gap = coverageGap(input);
  if (gap) return step('machine-ids', 'unknown', gap, []);
  return step('machine-ids', 'ready', `every reporting node (${input.nodes.reporting}) has a valid machine ID of its own`, m.qualifying);
}

function rootCa(input: ReadinessInput): ReadinessStep {
  const m = match(input, 'root-ca');
  const state = input.rootCa?.state;
  if (m.blocking.length > 0) return step('root-ca', 'not-ready', phrases(m.blocking), m.blocking);
  if (!input.clusterView) return step('root-ca', 'unknown', 'the cluster view is off: nodeprep cannot read the ConfigMap', []);
  if (state === undefined) return step('root-ca', 'unknown', 'not checked yet', []);
  if (m.open.length > 0) return step('root-ca', 'unknown', phrases(m.open), m.open);
  // The check's own facts, should its findings not have come along.
  if (input.rootCa?.pceOutcome === 'untrusted' && state !== 'missing') return step('root-ca', 'not-ready', PHRASE.ILLUMIO_PCE_TLS_UNTRUSTED!, []);
  if (input.rootCa?.pceOutcome === 'unreachable') return step('root-ca', 'unknown', PHRASE.ILLUMIO_PCE_UNREACHABLE!, []);
  const notNeeded = m.qualifying.some((f) => f.code === 'ILLUMIO_ROOT_CA_MISSING');
  if (state === 'invalid' || (state === 'missing' && !notNeeded)) {
    return step('root-ca', 'not-ready', state === 'invalid' ? PHRASE.ILLUMIO_ROOT_CA_INVALID! : PHRASE.ILLUMIO_ROOT_CA_MISSING!, []);
  }
  let reason = notNeeded
    ? 'no ConfigMap is needed: the PCE\'s certificate verifies against the public root CAs'
    : input.rootCa?.pceOutcome === 'trusted'
      ? 'the ConfigMap\'s CA verifies the PCE\'s certificate'
      : 'the ConfigMap holds a valid CA certificate (not checked against the PCE: no PCE URL configured)';
  if (m.qualifying.some((f) => f.code === 'ILLUMIO_ROOT_CA_EXPIRING')) reason += '; a CA certificate expires soon';
  return step('root-ca', 'ready', reason, m.qualifying);
}

function sizing(input: ReadinessInput): ReadinessStep {
  const m = match(input, 'sizing');
  const answer = input.sizing;
  if (m.blocking.length > 0) return step('sizing', 'not-ready', `${phrases(m.blocking)}${answer ? ` (${answer.tier})` : ''}`, m.blocking);
  if (!input.clusterView) return step('sizing', 'unknown', 'the cluster view is off: nodeprep cannot count workloads nor read the deployed resources', []);
  if (answer === undefined) return step('sizing', 'unknown', 'not computed yet', []);
  if (answer.decidedBy.length === 0) return step('sizing', 'unknown', answer.reason, []);
  if (answer.beyondGuidance) return step('sizing', 'unknown', answer.reason, []);
  return step('sizing', 'ready', `tier ${answer.reason}`, m.qualifying);
}

function calicoAppend(input: ReadinessInput): ReadinessStep {
  const m = match(input, 'calico-append');
  if (m.blocking.length > 0) return step('calico-append', 'not-ready', phrases(m.blocking), m.blocking);
  if (input.calico === 'not-in-use') return step('calico-append', 'ready', 'Calico not in use', []);
  if (m.open.length > 0) return step('calico-append', 'unknown', phrases(m.open), m.open);
  if (input.calico === 'unknown') return step('calico-append', 'unknown', 'whether Calico is in use is not known yet', []);
  const gap = coverageGap(input);
  if (gap) return step('calico-append', 'unknown', gap, []);
  return step('calico-append', 'ready', `Calico is in Append mode on every reporting node (${input.nodes.reporting})`, m.qualifying);
}

/**
 * The guide's four steps in order, and `ready` only when every step is ready, every node of the
 * cluster reports (which needs the cluster view to count them) and nothing outside the steps
 * blocks (a server VEN).
 */
export function assessReadiness(input: ReadinessInput): Readiness {
  const steps = [machineIds(input), rootCa(input), sizing(input), calicoAppend(input)];
  const otherBlockers = input.findings.filter((f) => OTHER_BLOCKERS.includes(f.code) && f.severity !== 'info');
  const { reporting, inCluster } = input.nodes;
  const everyNode = inCluster !== undefined && inCluster > 0 && reporting >= inCluster;
  const ready = everyNode && otherBlockers.length === 0 && steps.every((s) => s.state === 'ready');
  const coverage = inCluster === undefined ? `${reporting} nodes report (nodes in the cluster unknown: the cluster view is off)` : `${reporting} of ${inCluster} nodes report`;
  let reason: string;
  if (ready) {
    reason = `ready: install C-VEN and Kubelink with the ${input.sizing!.tier} tier's values; every step is ready and ${coverage}`;
  } else {
    const open = steps.filter((s) => s.state !== 'ready').map((s) => `${s.title}: ${s.state}`);
    if (otherBlockers.length > 0) open.push('a server VEN is installed on a node');
    reason = `not ready: ${open.length > 0 ? open.join('; ') : 'every step is ready'}; ${coverage}`;
  }
  return {
    ready,
    reason,
    steps,
    nodes: inCluster === undefined ? { reporting } : { reporting, inCluster },
    otherBlockers: ids(otherBlockers),
    ...(input.sizing ? { tier: input.sizing.tier } : {}),
  };
}
