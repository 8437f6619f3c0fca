// Machine-ID checks (design.md section 6; systemd machine-id(5); google/cadvisor machine/info.go).
import type { NodeReport } from '../../protocol/report.js';
import { makeFinding, type FindingDraft, nodeKey } from './finding.js';

/**
 * The application-specific ID of the node's /etc/machine-id (protocol/machine-id.ts) when the
 * agent found it valid; the kubelet reports the raw form of this one.
 */
export function validMachineId(report: NodeReport): string | undefined {
  const etc = report.machineId.etc;
  return etc.status === 'ok' ? etc.appId : undefined;
}

// systemd-machine-id-setup initialises /etc/machine-id from the D-Bus copy when that one is
// valid, so a fresh ID needs both files gone (machine-id(5), systemd-machine-id-setup(1)).
const REGENERATE =
  'sudo rm -f /etc/machine-id /var/lib/dbus/machine-id && sudo systemd-machine-id-setup';
const RESTART =
  'then restart the kubelet (`sudo systemctl restart kubelet`) and the C-VEN pod on the node ' +
  '(`kubectl -n illumio-system delete pod -l app=illumio-ven --field-selector spec.nodeName=<node>`), or reboot the node';

const STATUS_TEXT: Record<string, string> = {
  missing: 'is missing',
  empty: 'is empty',
  uninitialized: 'says "uninitialized" (first boot never completed)',
  invalid: 'is not 32 lowercase hex digits, or is all zeros',
};

export function detectMachineIdProblems(report: NodeReport): FindingDraft[] {
  const node = nodeKey(report);
  const { etc, dbus } = report.machineId;
  const findings: FindingDraft[] = [];
  if (etc.status !== 'ok') {
    findings.push(
      makeFinding('MACHINE_ID_INVALID', [node], {
        nodes: [node],
        message: `/etc/machine-id on ${node} ${STATUS_TEXT[etc.status] ?? etc.status}; the kubelet and the C-VEN need a unique, valid ID`,
        remediation:
          `On ${node}: \`${REGENERATE}\`, ${RESTART.replace('<node>', node)}. ` +
          'Removing only /etc/machine-id is not enough: systemd-machine-id-setup copies a valid ID back from /var/lib/dbus/machine-id. ' +
          'Golden images should ship /etc/machine-id empty (not missing, not a copied ID) so each machine generates its own at first boot.',
        evidence: { file: '/etc/machine-id', status: etc.status, ...(etc.detail === undefined ? {} : { detail: etc.detail }) },
      }),
    );
  }
  // A link is how distributions keep the two in step; only a separate file can drift.
  if (etc.status === 'ok' && dbus.status === 'ok' && dbus.linkTarget === undefined && dbus.appId !== etc.appId) {
    findings.push(
      makeFinding('MACHINE_ID_DBUS_MISMATCH', [node], {
        nodes: [node],
        message: `/var/lib/dbus/machine-id on ${node} differs from /etc/machine-id; software reading the D-Bus copy sees another identity`,
        remediation:
          `On ${node}: \`sudo ln -sf /etc/machine-id /var/lib/dbus/machine-id\`. ` +
          'If this node was cloned, regenerate both instead (the D-Bus copy may hold the image\'s ID): ' +
          `\`${REGENERATE}\`, ${RESTART.replace('<node>', node)}.`,
        // Application-specific IDs: the raw IDs never leave the node.
        evidence: { etcAppId: etc.appId, dbusAppId: dbus.appId },
      }),
    );
  }
  return findings;
}

/**
 * KUBELET_MACHINE_ID_STALE: the kubelet reads /etc/machine-id when it starts and publishes it as
 * status.nodeInfo.machineID; after a fix it keeps the old one until restarted, and so does the
 * C-VEN, which reads it the same way.
 */
export function detectKubeletMachineIdStale(report: NodeReport, kubeletAppId: string | undefined): FindingDraft[] {
  const agentAppId = validMachineId(report);
  if (kubeletAppId === undefined || agentAppId === undefined || kubeletAppId === agentAppId) return [];
  const node = nodeKey(report);
  return [
    makeFinding('KUBELET_MACHINE_ID_STALE', [node], {
      nodes: [node],
      message: `the kubelet on ${node} still publishes another machine ID than the node's /etc/machine-id: it was not restarted after the ID changed`,
      remediation:
        `On ${node}: \`sudo systemctl restart kubelet\`, then restart the C-VEN pod there ` +
        `(\`kubectl -n illumio-system delete pod -l app=illumio-ven --field-selector spec.nodeName=${report.node.name}\`): both read the ID when they start.`,
      // Application-specific IDs (protocol/machine-id.ts): the raw IDs never leave the node.
      evidence: { kubeletAppId, etcAppId: agentAppId },
    }),
  ];
}

/** One finding per machine ID held by two or more nodes; `sample` lists some, with where each ID came from. */
export function duplicateMachineIdFinding(
  machineId: string,
  sample: { node: string; source: 'agent' | 'kubelet' }[],
  nodeCount: number,
  sources: { agent: number; kubelet: number },
): FindingDraft {
  const sorted = sample.slice().sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  const shown = sorted.map((s) => s.node);
  const fromKubelet = sorted.filter((s) => s.source === 'kubelet').map((s) => s.node);
  return makeFinding('MACHINE_ID_DUPLICATE', [machineId], {
    nodes: shown,
    message:
      `${nodeCount} nodes share one machine ID (application-specific ID ${machineId}: ${shown.slice(0, 20).join(', ')}${nodeCount > 20 ? ', ...' : ''}): they were cloned from one image` +
      (sources.kubelet > 0 ? `; for ${sources.kubelet} of them only the kubelet's copy is known (no agent report)` : ''),
    remediation:
      `On every node but one (on all of them if the ID is the image's): \`${REGENERATE}\`, ${RESTART}. ` +
      'Removing only /etc/machine-id lets the old ID come back from the D-Bus copy. ' +
      'Check with `kubectl get nodes -o custom-columns=NAME:.metadata.name,MACHINE_ID:.status.nodeInfo.machineID`. ' +
      'Fix the golden image so /etc/machine-id ships empty and every new node generates its own ID.',
    evidence: { machineId, nodeCount, sources, ...(fromKubelet.length > 0 ? { kubeletOnly: fromKubelet } : {}) },
  });
}
