// The iptables backends and what could not be read (design.md section 6; kubernetes-sigs/
// iptables-wrappers; felix/environment/feature_detect_linux.go).
import type { IptablesRuleset, NftBaseChain, NodeReport } from '../../protocol/report.js';
import { makeFinding, type FindingDraft, nodeKey } from './finding.js';

// The kubelet creates these chains in the backend it uses; iptables-wrappers relies on them.
const KUBERNETES_BACKEND_MARKERS = ['KUBE-IPTABLES-HINT', 'KUBE-KUBELET-CANARY'];

function hasKubernetesMarker(set: IptablesRuleset): boolean {
  return set.tables.some((t) => t.userChains.names.some((name) => KUBERNETES_BACKEND_MARKERS.includes(name)));
}

export function detectMixedBackends(report: NodeReport): FindingDraft[] {
  const node = nodeKey(report);
  const findings: FindingDraft[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    const legacy = report.iptables.filter((s) => s.family === family && s.backend === 'legacy' && s.ruleCount > 0);
    const nft = report.iptables.filter((s) => s.family === family && s.backend === 'nft' && s.ruleCount > 0);
    if (legacy.length === 0 || nft.length === 0) continue;
    const legacyRules = legacy.reduce((n, s) => n + s.ruleCount, 0);
    const nftRules = nft.reduce((n, s) => n + s.ruleCount, 0);
    const markedLegacy = legacy.some(hasKubernetesMarker);
    const markedNft = nft.some(hasKubernetesMarker);
    // Without the kubelet's marker chains, the backend with more rules is the one in use.
    const kubernetesBackend = markedLegacy === markedNft ? (legacyRules >= nftRules ? 'legacy' : 'nft') : markedLegacy ? 'legacy' : 'nft';
    const other = kubernetesBackend === 'legacy' ? 'nft' : 'legacy';
    const tool = family === 'ipv6' ? 'ip6tables' : 'iptables';
    findings.push(
      makeFinding('IPTABLES_MIXED_BACKENDS', [node, family], {
        nodes: [node],
        message: `${node} has ${family} rules in both iptables backends (legacy: ${legacyRules}, nft: ${nftRules}); Kubernetes appears to use ${kubernetesBackend}`,
        remediation:
          `Find what writes the ${other} rules (\`${tool}-${other}-save\` on the node): usually a component whose image ships another iptables mode, ` +
          'or rules left from before an OS upgrade. Switch it to the backend kube-proxy uses (iptables-wrappers picks it automatically) and, once nothing uses them, ' +
          `remove the leftovers (reboot, or flush with ${tool}-${other}). Both sets are evaluated by the kernel, so this only matters where they interact. ` +
          `Install the C-VEN with the firewall backend that matches kube-proxy's (${kubernetesBackend}; Illumio's Helm chart has the setting).`,
        evidence: { family, legacyRules, nftRules, kubernetesBackend, kubernetesMarkers: { legacy: markedLegacy, nft: markedNft } },
      }),
    );
  }
  return findings;
}

// iptables' own base chain of each hook of each table, with the nft priority iptables-nft gives it
// (iptables nft.c, the builtin tables; as `nft -y list ruleset` shows them after iptables-nft 1.8.9
// wrote to each table: raw -300, mangle -150, nat -100 before routing and 100 after, filter 0,
// security 150). A base chain of one of iptables' tables that is not one of these is another
// program's, written with nft.
const IPTABLES_BASE_CHAINS: Record<string, { name: string; hook: string; priority: number }[]> = {
  raw: [{ name: 'PREROUTING', hook: 'prerouting', priority: -300 }, { name: 'OUTPUT', hook: 'output', priority: -300 }],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'].map((name) => ({ name, hook: name.toLowerCase(), priority: -150 })),
  nat: [
    { name: 'PREROUTING', hook: 'prerouting', priority: -100 }, { name: 'INPUT', hook: 'input', priority: 100 },
    { name: 'OUTPUT', hook: 'output', priority: -100 }, { name: 'POSTROUTING', hook: 'postrouting', priority: 100 },
  ],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'].map((name) => ({ name, hook: name.toLowerCase(), priority: 0 })),
  security: ['INPUT', 'FORWARD', 'OUTPUT'].map((name) => ({ name, hook: name.toLowerCase(), priority: 150 })),
};

/** For a table with base chains iptables does not own: what they are, and what to do. */
function foreignBaseChains(family: string, table: string, chains: readonly NftBaseChain[]): string | undefined {
  const own = IPTABLES_BASE_CHAINS[table] ?? [];
  const foreign = chains.filter((c) => !own.some((o) => o.name === c.name && o.hook === c.hook && o.priority === c.priority));
  if (foreign.length === 0) return undefined;
  const listed = foreign.map((c) => `${c.name} (hook ${c.hook}, priority ${c.priority}, ${c.ruleCount} rule(s))`).join(', ');
  return (
    `Another program created base chains with nft in iptables' own ${table} table: ${listed}. ` +
    `iptables cannot list them, yet the kernel runs them with iptables' chains in priority order (lower first), so iptables-save does not show everything that sees the packets first. ` +
    `See them with \`nft list table ${family === 'ipv6' ? 'ip6' : 'ip'} ${table}\` on the node, find the program that made them, and have it keep its chains in a table of its own ` +
    "(as Calico's and kube-proxy's nftables modes do); until then Calico's mode in this table is undetermined."
  );
}

export function detectIncompleteTables(report: NodeReport): FindingDraft[] {
  const node = nodeKey(report);
  const findings: FindingDraft[] = [];
  const remediation = (family: string) =>
    `Calico's mode for this table is undetermined until it can be read whole. Run \`${family === 'ipv6' ? 'ip6tables' : 'iptables'}-save\` on the node: ` +
    'a line like "# Table `filter\' is incompatible, use \'nft\' tool." means the agent\'s iptables is older than the one that wrote the rules ' +
    '(use an agent image whose iptables is at least the host\'s); a cut dump means the collection timed out or the file was truncated.';
  for (const set of report.iptables) {
    if (set.verdict === 'unsupported' || (set.verdict === 'incomplete' && set.tables.every((t) => t.complete))) {
      findings.push(
        makeFinding('IPTABLES_INCOMPLETE', [node, set.family, set.backend, '*'], {
          nodes: [node],
          message: `the ${set.family}/${set.backend} ruleset of ${node} could not be read as iptables-save output (${set.verdict}${set.message ? `: ${set.message}` : ''})`,
          remediation: remediation(set.family),
          evidence: { family: set.family, backend: set.backend, source: set.source, verdict: set.verdict, ...(set.message ? { problem: set.message } : {}) },
        }),
      );
      continue;
    }
    for (const table of set.tables) {
      if (table.complete) continue;
      const baseChains = table.nftBaseChains ?? [];
      findings.push(
        makeFinding('IPTABLES_INCOMPLETE', [node, set.family, set.backend, table.name], {
          nodes: [node],
          message: `the ${set.family}/${set.backend} ${table.name} table of ${node} could not be read whole${table.problem ? ` (${table.problem})` : ''}; its Calico mode is undetermined`,
          remediation: foreignBaseChains(set.family, table.name, baseChains) ?? remediation(set.family),
          evidence: {
            family: set.family, backend: set.backend, table: table.name, source: set.source,
            ...(table.problem ? { problem: table.problem } : {}),
            ...(baseChains.length > 0 ? { nftBaseChains: baseChains } : {}),
          },
        }),
      );
    }
  }
  return findings;
}
