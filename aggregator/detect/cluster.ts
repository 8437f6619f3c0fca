// Findings about more than one report: mixed Calico modes and silent nodes. The store decides
// when they hold (from its indexes); these functions only word them.
import { makeFinding, type FindingDraft } from './finding.js';
import { SET_APPEND_MODE } from './calico.js';

export function calicoModeMixedFinding(
  cluster: string,
  counts: { insert: number; append: number },
  minority: 'insert' | 'append',
  nodes: string[],
): FindingDraft {
  const shown = nodes.slice().sort();
  const where = cluster === '' ? 'the cluster' : `cluster ${cluster}`;
  return makeFinding('CALICO_MODE_MIXED', [cluster], {
    nodes: shown,
    message: `nodes of ${where} disagree on Calico's mode: ${counts.insert} in Insert, ${counts.append} in Append; the ${minority === 'insert' ? 'Insert' : 'Append'} nodes are listed`,
    remediation:
      'A calico-node rollout may be under way (`kubectl -n calico-system rollout status ds/calico-node`, or kube-system for manifest installs); if not, ' +
      'a per-node FelixConfiguration (node.<node-name>) or FELIX_CHAININSERTMODE on some calico-node pods sets another mode. ' +
      SET_APPEND_MODE,
    evidence: { cluster, counts, minority, nodeCount: counts[minority] },
  });
}

export function nodeStaleFinding(node: string, lastSeen: string, ttlSeconds: number, dropAfterSeconds: number): FindingDraft {
  return makeFinding('NODE_STALE', [node], {
    nodes: [node],
    message: `no report from ${node} since ${lastSeen} (expiry ${ttlSeconds} s); its other findings are as of that report`,
    remediation:
      `Check that the node still exists (\`kubectl get node ${node}\`) and that the nodeprep agent runs on it ` +
      `(\`kubectl get pods -A -o wide --field-selector spec.nodeName=${node} | grep nodeprep\`) and can reach the aggregator (its log shows failed sends). ` +
      `A node that is gone is forgotten ${dropAfterSeconds} s after its last report.`,
    evidence: { lastSeen, ttlSeconds },
  });
}
