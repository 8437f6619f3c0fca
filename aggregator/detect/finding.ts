// What every detector returns: a finding without its `since`, which only the store knows.
import { createHash } from 'node:crypto';
import { FINDING_SEVERITY, type Finding, type FindingCode, type Severity } from '../../protocol/findings.js';
import type { NodeReport } from '../../protocol/report.js';

export type FindingDraft = Omit<Finding, 'since'>;

/**
 * The name a node goes by in the aggregator: its name, or "<cluster>/<name>" when its agent
 * says which cluster it is in. Agents of several clusters can report to one aggregator
 * (charts/nodeprep, aggregator.enabled=false), and node names such as worker-1 repeat between
 * clusters: without the cluster one node's report would replace another's.
 */
export function nodeKey(report: Pick<NodeReport, 'node'>): string {
  return report.node.cluster ? `${report.node.cluster}/${report.node.name}` : report.node.name;
}

/**
 * A stable id for "this problem": the code and the subject it is about (a machine ID, a node, a
 * node's table and chain). Hashing keeps ids short and the same after a restart, so an alert
 * pipeline can deduplicate raised/resolved pairs across aggregator restarts.
 */
export function findingId(code: FindingCode, subject: readonly string[]): string {
  return createHash('sha256').update(code).update('\0').update(subject.join('\0')).digest('hex').slice(0, 16);
}

export function makeFinding(
  code: FindingCode,
  subject: readonly string[],
  fields: { nodes: string[]; message: string; remediation: string; evidence: Record<string, unknown>; severity?: Severity },
): FindingDraft {
  const { severity = FINDING_SEVERITY[code], ...rest } = fields;
  return { id: findingId(code, subject), code, severity, ...rest };
}
