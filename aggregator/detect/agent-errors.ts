// What the agent could not collect: each failed source is one finding, so a fix shows as resolved.
import type { NodeReport } from '../../protocol/report.js';
import { makeFinding, type FindingDraft, nodeKey } from './finding.js';

export function detectCollectionErrors(report: NodeReport): FindingDraft[] {
  const node = nodeKey(report);
  const bySource = new Map<string, string[]>();
  for (const error of report.errors) {
    const messages = bySource.get(error.source) ?? [];
    messages.push(error.message);
    bySource.set(error.source, messages);
  }
  return [...bySource].map(([source, messages]) =>
    makeFinding('AGENT_COLLECTION_ERROR', [node, source], {
      nodes: [node],
      message: `the agent on ${node} could not collect ${source}: ${messages[0]}`,
      remediation:
        `Read the agent's log on ${node} (\`kubectl logs -n <namespace> <nodeprep-agent pod on ${node}>\`). ` +
        'The agent needs the host root mounted read-only at /host, hostNetwork, and the NET_ADMIN and NET_RAW capabilities for iptables-save; ' +
        'an iptables binary older than the one that wrote the rules can also fail. Until this is fixed, findings that depend on this source are missing for the node.',
      evidence: { source, messages },
    }),
  );
}
