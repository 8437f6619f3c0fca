// The nodes the Kubernetes API knows, against the nodes that report (design.md section 9). Pure:
// the cluster view's facts and what the aggregator has heard in, findings out.
import { FINDING_NODES } from '../../protocol/findings.js';
import { untoleratedTaints, type ClusterFacts, type NodeFacts } from '../cluster/facts.js';
import { makeFinding, type FindingDraft } from './finding.js';

export interface InventoryInput {
  facts: ClusterFacts;
  // The node key of a Node of this cluster ("<cluster>/<name>" or "<name>").
  keyOf: (name: string) => string;
  // Whether a report (live or stale) is held for the node key.
  hasReport: (key: string) => boolean;
  now: number;
  // Since when the aggregator could hear every agent: its start, or the last time it turned an
  // agent away (a 503: the agent retries). A node is not missing a report before then.
  hearingSince: number;
  graceMs: number;
}

/** NODE_NO_AGENT for every Node without a report within the grace period. */
export function detectNodesWithoutAgent(input: InventoryInput): FindingDraft[] {
  const { facts, now, graceMs } = input;
  const drafts: FindingDraft[] = [];
  const daemonSet = facts.agentDaemonSet;
  for (const node of facts.nodes.values()) {
    const key = input.keyOf(node.name);
    if (input.hasReport(key)) continue;
    const since = Math.max(node.createdAt, input.hearingSince);
    if (now - since < graceMs) continue;
    drafts.push(noAgentFinding(key, node, facts, daemonSet === undefined ? undefined : `${daemonSet.namespace}/${daemonSet.name}`));
  }
  return drafts;
}

function noAgentFinding(key: string, node: NodeFacts, facts: ClusterFacts, daemonSet: string | undefined): FindingDraft {
  const taints = facts.agentDaemonSet ? untoleratedTaints(node.taints, facts.agentDaemonSet.tolerations) : [];
  const pod = facts.agentPods.get(node.name);
  const evidence: Record<string, unknown> = { node: node.name, createdAt: new Date(node.createdAt).toISOString() };
  if (daemonSet) evidence.daemonSet = daemonSet;
  if (taints.length > 0) evidence.untoleratedTaints = taints.map((t) => `${t.key}${t.value ? `=${t.value}` : ''}:${t.effect}`);
  if (pod) evidence.agentPod = { name: `${pod.namespace}/${pod.name}`, phase: pod.phase, ...(pod.reason ? { reason: pod.reason } : {}), ready: pod.ready };

  let why: string;
  let remediation: string;
  if (!daemonSet) {
    why = 'the nodeprep agent DaemonSet was not found';
    remediation = 'Install or repair the chart (`helm upgrade --install nodeprep charts/nodeprep -n nodeprep`); the aggregator looks for the DaemonSet named in AGENT_DAEMONSET.';
  } else if (pod) {
    why = `its agent pod ${pod.namespace}/${pod.name} is ${pod.phase}${pod.reason ? ` (${pod.reason})` : ''}`;
    remediation =
      `See why: \`kubectl -n ${pod.namespace} describe pod ${pod.name}\` (events at the end). Image pull errors need the agent image in a registry the node reaches; ` +
      '"hostPath type check failed" means a host path the agent mounts is missing; a running pod that never reports cannot reach the aggregator (its log says why: ' +
      `\`kubectl -n ${pod.namespace} logs ${pod.name}\`).`;
  } else if (taints.length > 0) {
    why = `the agent DaemonSet does not tolerate its taint${taints.length > 1 ? 's' : ''} ${(evidence.untoleratedTaints as string[]).join(', ')}`;
    remediation =
      'The agent tolerates every taint by default (chart value agent.tolerations: [{operator: Exists}]); this install narrowed it. ' +
      'Add a toleration for the taint to agent.tolerations, or accept that this node is not checked: its machine ID and Calico mode are then unknown, and it is still a node C-VEN runs on.';
  } else {
    why = 'no agent pod is scheduled on it';
    remediation =
      `Check the DaemonSet's node selection (\`kubectl -n ${daemonSet.split('/')[0]} get ds ${daemonSet.split('/')[1]} -o yaml\`: nodeSelector, affinity) and its events; ` +
      'a node added a moment ago gets its pod within seconds.';
  }
  return makeFinding('NODE_NO_AGENT', [key], {
    nodes: [key],
    message: `no report from ${key}: the Node exists but ${why}`,
    remediation: `${remediation} Until the agent reports, this node's machine ID is known only from the kubelet and its Calico mode not at all.`,
    evidence,
  });
}

/** SYSTEM_UUID_DUPLICATE: Nodes that share status.nodeInfo.systemUUID, the mark of cloned VMs. */
export function detectSystemUuidDuplicates(facts: ClusterFacts, keyOf: (name: string) => string): { drafts: FindingDraft[]; members: Map<string, string[]> } {
  const byUuid = new Map<string, string[]>();
  for (const node of facts.nodes.values()) {
    // Some platforms report nothing or all zeros; neither says anything about cloning.
    const uuid = node.systemUUID?.toLowerCase();
    if (!uuid || /^[0-]*$/.test(uuid)) continue;
    const list = byUuid.get(uuid) ?? [];
    list.push(keyOf(node.name));
    byUuid.set(uuid, list);
  }
  const drafts: FindingDraft[] = [];
  const members = new Map<string, string[]>();
  for (const [uuid, keys] of byUuid) {
    if (keys.length < 2) continue;
    keys.sort();
    const draft = makeFinding('SYSTEM_UUID_DUPLICATE', [uuid], {
      nodes: keys.slice(0, FINDING_NODES),
      message: `${keys.length} nodes share the system UUID ${uuid} (${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', ...' : ''}): they are clones of one VM, which usually share a machine ID too`,
      remediation:
        'Give each VM its own hardware UUID (VMware: answer "I copied it" when powering on a copy, or remove uuid.bios from the .vmx; clouds assign unique ones), ' +
        'and check the machine IDs of these nodes (MACHINE_ID_DUPLICATE). Some software identifies hosts by this UUID; Illumio identifies workloads by machine ID.',
      evidence: { systemUUID: uuid, nodeCount: keys.length },
    });
    drafts.push(draft);
    members.set(draft.id, keys);
  }
  return { drafts, members };
}
