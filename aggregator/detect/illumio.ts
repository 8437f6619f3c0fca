// Illumio on the node (design.md section 6): the host marker the C-VEN DaemonSet mounts
// (/opt/illumio_ven_data), a server VEN, or chains whose names match ILLUMIO_CHAIN_PATTERNS.
// The chain names the VEN writes are not public, so they are configuration, not code.
import type { NodeReport } from '../../protocol/report.js';
import { makeFinding, type FindingDraft, nodeKey } from './finding.js';

export type ChainMatcher = (chain: string) => boolean;

/**
 * Compiles `ILLUMIO_CHAIN_PATTERNS`: comma-separated entries, each a glob (`*`, `?`) matched
 * against the whole chain name, or, without a wildcard, a prefix. Case-sensitive, as iptables is.
 */
export function compileChainPatterns(spec: string): ChainMatcher {
  const entries = spec.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (entries.length === 0) return () => false;
  const sources = entries.map((entry) => {
    const escaped = entry.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    return /[*?]/.test(entry) ? `^(?:${escaped})$` : `^(?:${escaped})`;
  });
  const pattern = new RegExp(sources.join('|'));
  return (chain) => pattern.test(chain);
}

export interface IllumioPresence {
  present: boolean;
  hostDataDir: boolean;
  // Illumio is known to run on the node from outside its report: the cluster view's C-VEN pod.
  fromElsewhere: boolean;
  // Up to 8 chain names (or family prefixes) that matched the patterns, for the evidence.
  chains: string[];
}

/**
 * Whether Illumio runs on the node: its host marker, a chain the patterns name, or
 * `fromElsewhere`, what the aggregator knows without the report (a C-VEN pod on the node).
 */
export function illumioPresence(report: NodeReport, isIllumioChain: ChainMatcher, fromElsewhere = false): IllumioPresence {
  const chains = new Set<string>();
  for (const set of report.iptables) {
    for (const table of set.tables) {
      for (const name of table.userChains.names) if (isIllumioChain(name)) chains.add(name);
      for (const prefix of Object.keys(table.userChains.families)) if (isIllumioChain(prefix)) chains.add(prefix);
      for (const chain of table.builtinChains) {
        for (const rule of chain.rules) if (rule.target !== '' && isIllumioChain(rule.target)) chains.add(rule.target);
      }
    }
  }
  const hostDataDir = report.illumio.hostDataDir;
  return { present: hostDataDir || fromElsewhere || chains.size > 0, hostDataDir, fromElsewhere, chains: [...chains].sort().slice(0, 8) };
}

/**
 * Illumio runs on the node but no configured pattern names any of its chains there: the VEN's
 * chain names are not public, and ILLUMIO_CHAIN_PATTERNS holds placeholders until an admin sets
 * them. Then the VEN's own jump cannot be told from another product's by name, and an unknown
 * jump at the head of a chain Calico hooks is presumed to be the VEN's: in coexistence mode the
 * VEN keeps the first position of the main tables (design.md section 6), so that is where its
 * jump is expected. Once the patterns name the VEN's chains, they decide.
 */
export function illumioUnnamed(illumio: IllumioPresence): boolean {
  return (illumio.hostDataDir || illumio.fromElsewhere) && illumio.chains.length === 0;
}

export function detectServerVen(report: NodeReport): FindingDraft[] {
  if (!report.illumio.serverVen) return [];
  const node = nodeKey(report);
  return [
    makeFinding('ILLUMIO_SERVER_VEN', [node], {
      nodes: [node],
      message: `a server VEN is installed on ${node} (/opt/illumio_ven/illumio-ven-ctl); Illumio supports only the C-VEN on Kubernetes nodes`,
      remediation:
        `Unpair and uninstall the server VEN on ${node} (in the PCE, or \`sudo /opt/illumio_ven/illumio-ven-ctl unpair\` ` +
        'with the firewall-restore option Illumio\'s VEN guide recommends for your case), then let the C-VEN DaemonSet ' +
        '(illumio-ven in illumio-system, installed with Illumio\'s Helm chart) manage the node. ' +
        'Do not run both: each programs the host firewall as its own.',
      evidence: { path: '/opt/illumio_ven/illumio-ven-ctl' },
    }),
  ];
}
