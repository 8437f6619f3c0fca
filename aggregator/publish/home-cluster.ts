// What of a finding is about this cluster's own Kubernetes API: the report object and the Events
// speak of Node objects, and only the aggregator's own cluster (the one whose API it writes to)
// has them. Agents of other clusters may report to the same aggregator; their findings stay in
// the HTTP API and the alert log.
import type { Finding } from '../../protocol/findings.js';

/** The Node name of a node key of this cluster ("<home>/<name>", or "<name>" when home is ''); undefined for another cluster's. */
export function homeNodeName(home: string, key: string): string | undefined {
  if (home === '') return key.includes('/') ? undefined : key;
  return key.startsWith(`${home}/`) ? key.slice(home.length + 1) : undefined;
}

/** A finding about this cluster: about its nodes, or about no node (the cluster's own, as readiness counts them). */
export function isHomeFinding(home: string, finding: Pick<Finding, 'nodes'>): boolean {
  return finding.nodes.length === 0 || homeNodeName(home, finding.nodes[0]!) !== undefined;
}
