// Findings: what the aggregator concludes from the reports (design.md section 5).
import { z } from 'zod';

export const Severity = z.enum(['critical', 'warning', 'info']);
export type Severity = z.infer<typeof Severity>;

export const FINDING_SEVERITY = {
  MACHINE_ID_DUPLICATE: 'critical',
  MACHINE_ID_INVALID: 'critical',
  MACHINE_ID_DBUS_MISMATCH: 'warning',
  CALICO_INSERT_MODE: 'warning',
  CALICO_ILLUMIO_CONFLICT: 'critical',
  CALICO_MODE_MIXED: 'warning',
  CALICO_OUT_OF_SYNC: 'warning',
  // Not in design.md's table yet: section 6 says "an unknown product's jump at the head of a chain
  // Calico hooks is reported as a foreign head-of-chain rule"; this is that report.
  FOREIGN_HEAD_RULE: 'warning',
  IPTABLES_MIXED_BACKENDS: 'warning',
  CALICO_NFT_DATAPLANE: 'info',
  CALICO_STALE_CHAINS: 'info',
  IPTABLES_INCOMPLETE: 'warning',
  AGENT_COLLECTION_ERROR: 'warning',
  NODE_STALE: 'warning',
  ILLUMIO_SERVER_VEN: 'critical',
  // The cluster view (design.md section 9): what the Kubernetes API says.
  NODE_NO_AGENT: 'warning',
  KUBELET_MACHINE_ID_STALE: 'warning',
  SYSTEM_UUID_DUPLICATE: 'info',
  CALICO_CONFIG_NOT_APPEND: 'warning', // critical where Illumio is present
  CALICO_CONFIG_DRIFT: 'warning',
  // The guide's other steps (design.md section 9).
  ILLUMIO_ROOT_CA_MISSING: 'warning', // info when the PCE's certificate is publicly trusted
  ILLUMIO_ROOT_CA_INVALID: 'critical',
  // Not in design.md's table: an intermediate CA without its root (issue 20). A warning, not
  // INVALID's critical: the certificate is a valid CA, and Go clients may take it as an anchor.
  ILLUMIO_ROOT_CA_INTERMEDIATE: 'warning',
  ILLUMIO_ROOT_CA_EXPIRING: 'warning',
  ILLUMIO_PCE_TLS_UNTRUSTED: 'critical',
  ILLUMIO_PCE_UNREACHABLE: 'warning',
  ILLUMIO_UNDERSIZED: 'warning',
} as const satisfies Record<string, Severity>;

// The severity in FINDING_SEVERITY is a code's usual one; a few codes are raised at another
// severity where the case calls for it (marked above), and the finding carries the one it has.
export type FindingCode = keyof typeof FINDING_SEVERITY;
export const FindingCode = z.enum(Object.keys(FINDING_SEVERITY) as [FindingCode, ...FindingCode[]]);

export const FINDING_NODES = 100;

export const Finding = z.object({
  // Stable for the same problem (code plus what it is about), so alert pipelines can deduplicate:
  // the first 16 hex digits of SHA-256(code, subject), the same after a restart of the aggregator.
  id: z.string(),
  code: FindingCode,
  severity: Severity,
  // Affected nodes, sorted: at most FINDING_NODES of them. A finding about more nodes (a
  // duplicate machine ID, mixed modes) lists a sample and has the total in evidence.nodeCount;
  // GET /v1/nodes?code=<code> lists them all.
  nodes: z.array(z.string()),
  message: z.string(),
  remediation: z.string(),
  evidence: z.record(z.string(), z.unknown()),
  since: z.iso.datetime(),
});
export type Finding = z.infer<typeof Finding>;
