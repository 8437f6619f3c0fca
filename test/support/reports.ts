// NodeReport builders for the aggregator's tests and benchmark. The defaults describe a healthy
// kube-proxy (iptables mode) node with Calico in Append mode on the nft backend; every part can
// be replaced to describe a problem.
import { createHash } from 'node:crypto';
import { LIMITS } from '../../protocol/limits.js';
import type { BuiltinChain, Family, IptablesRuleset, IptablesTable, NodeReport, Rule } from '../../protocol/report.js';

export type CalicoMode = 'insert' | 'append';

/** A valid machine ID derived from a seed, so every node name gets its own. */
export function machineIdFor(seed: string): string {
  return createHash('md5').update(seed).digest('hex');
}

// The agent keeps the first LIMITS.comment characters of a comment; so do these reports.
const kube = (target: string, comment?: string): Rule => (comment ? { target, comment: comment.slice(0, LIMITS.comment) } : { target });
const cali = (target: string, hash: string): Rule => ({ target, comment: `cali:${hash}` });

// Calico's hooks (felix/rules/rule_defs.go hashes, design.md section 6).
export const CALICO_HOOKS = {
  raw: { PREROUTING: cali('cali-PREROUTING', '6gwbT8clXdHdC1b1'), OUTPUT: cali('cali-OUTPUT', 'tVnHkvAo15HuiPy0') },
  mangle: { PREROUTING: cali('cali-PREROUTING', '6gwbT8clXdHdC1b1'), POSTROUTING: cali('cali-POSTROUTING', 'O3lYWMrLQYEMJtB5') },
  nat: {
    PREROUTING: cali('cali-PREROUTING', '6gwbT8clXdHdC1b1'),
    OUTPUT: cali('cali-OUTPUT', 'tVnHkvAo15HuiPy0'),
    POSTROUTING: cali('cali-POSTROUTING', 'O3lYWMrLQYEMJtB5'),
  },
  filter: { INPUT: cali('cali-INPUT', 'Cz_u1IQiXIMmKD4c'), FORWARD: cali('cali-FORWARD', 'wUHhoiAYhphO9Mso'), OUTPUT: cali('cali-OUTPUT', 'tVnHkvAo15HuiPy0') },
} as const;

// Appended whatever the mode (design.md section 6).
export const ALWAYS_APPENDED = {
  filterForward: [cali('ACCEPT', 'S93hcgKJrXEqnTfs'), cali('MARK', 'mp77cMpurHhyjLrM')],
  natPostrouting: [cali('cali-POSTROUTING', '0i8pjzKKPyA34aQD')],
};

// kube-proxy's jumps in iptables mode (pkg/proxy/iptables/proxier.go).
const KUBE_RULES: Record<string, Record<string, Rule[]>> = {
  raw: { PREROUTING: [], OUTPUT: [] },
  mangle: { PREROUTING: [], POSTROUTING: [] },
  nat: {
    PREROUTING: [kube('KUBE-SERVICES', 'kubernetes service portals')],
    OUTPUT: [kube('KUBE-SERVICES', 'kubernetes service portals')],
    POSTROUTING: [kube('KUBE-POSTROUTING', 'kubernetes postrouting rules')],
  },
  filter: {
    INPUT: [kube('KUBE-PROXY-FIREWALL', 'kubernetes load balancer firewall'), kube('KUBE-NODEPORTS', 'kubernetes health check service ports'), kube('KUBE-EXTERNAL-SERVICES', 'kubernetes externally-visible service portals'), kube('KUBE-FIREWALL')],
    FORWARD: [kube('KUBE-PROXY-FIREWALL', 'kubernetes load balancer firewall'), kube('KUBE-FORWARD', 'kubernetes forwarding rules'), kube('KUBE-SERVICES', 'kubernetes service portals'), kube('KUBE-EXTERNAL-SERVICES', 'kubernetes externally-visible service portals')],
    OUTPUT: [kube('KUBE-PROXY-FIREWALL', 'kubernetes load balancer firewall'), kube('KUBE-SERVICES', 'kubernetes service portals'), kube('KUBE-FIREWALL')],
  },
};

const USER_CHAIN_NAMES: Record<string, string[]> = {
  raw: ['cali-PREROUTING', 'cali-OUTPUT', 'cali-rpf-skip', 'cali-from-host-endpoint', 'cali-to-host-endpoint'],
  mangle: ['cali-PREROUTING', 'cali-POSTROUTING', 'cali-from-host-endpoint', 'cali-to-host-endpoint', 'KUBE-IPTABLES-HINT', 'KUBE-KUBELET-CANARY', 'KUBE-PROXY-CANARY'],
  nat: ['cali-PREROUTING', 'cali-OUTPUT', 'cali-POSTROUTING', 'cali-nat-outgoing', 'cali-fip-dnat', 'cali-fip-snat', 'KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-KUBELET-CANARY', 'KUBE-PROXY-CANARY'],
  filter: ['cali-INPUT', 'cali-FORWARD', 'cali-OUTPUT', 'cali-wl-to-host', 'cali-from-wl-dispatch', 'cali-to-wl-dispatch', 'cali-from-host-endpoint', 'cali-to-host-endpoint', 'cali-from-hep-forward', 'cali-to-hep-forward', 'cali-cidr-block', 'cali-failsafe-in', 'cali-failsafe-out', 'KUBE-FIREWALL', 'KUBE-FORWARD', 'KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-EXTERNAL-SERVICES', 'KUBE-PROXY-FIREWALL', 'KUBE-KUBELET-CANARY', 'KUBE-PROXY-CANARY'],
};

export function chain(name: string, rules: Rule[], extra: Partial<BuiltinChain> = {}): BuiltinChain {
  return { name, policy: 'ACCEPT', ruleCount: rules.length, rules, ...extra };
}

export interface TableOptions {
  calico?: CalicoMode | 'none';
  // Services and pods: sizes of the KUBE-SVC-/KUBE-SEP-/cali-fw- families.
  services?: number;
  pods?: number;
}

export function calicoTable(name: 'raw' | 'mangle' | 'nat' | 'filter', options: TableOptions = {}): IptablesTable {
  const mode = options.calico ?? 'append';
  const services = options.services ?? 20;
  const pods = options.pods ?? 30;
  const hooks = CALICO_HOOKS[name] as Record<string, Rule>;
  const builtinChains = Object.entries(KUBE_RULES[name]!).map(([chainName, kubeRules]) => {
    const hook = hooks[chainName]!;
    let rules = mode === 'none' ? [...kubeRules] : mode === 'insert' ? [hook, ...kubeRules] : [...kubeRules, hook];
    if (mode !== 'none' && name === 'filter' && chainName === 'FORWARD') rules = [...rules, ...ALWAYS_APPENDED.filterForward];
    if (mode !== 'none' && name === 'nat' && chainName === 'POSTROUTING') rules = [...rules, ...ALWAYS_APPENDED.natPostrouting];
    return chain(chainName, rules);
  });
  const families: Record<string, number> = {};
  if (name === 'nat') Object.assign(families, { 'KUBE-SVC-': services, 'KUBE-SEP-': services * 3 });
  if (name === 'filter') Object.assign(families, { 'KUBE-FW-': 0, 'cali-fw-': pods, 'cali-tw-': pods, 'cali-pri-': 10, 'cali-pro-': 10, 'cali-pi-': 5, 'cali-po-': 5 });
  const names = USER_CHAIN_NAMES[name]!.filter((n) => mode !== 'none' || !n.startsWith('cali-'));
  if (mode === 'none') for (const key of Object.keys(families)) if (key.startsWith('cali-')) delete families[key];
  return { name, complete: true, builtinChains, userChains: { families, names } };
}

export function ruleset(family: Family, tables: IptablesTable[], extra: Partial<IptablesRuleset> = {}): IptablesRuleset {
  const ruleCount = tables.reduce((n, t) => n + t.builtinChains.reduce((m, c) => m + c.ruleCount, 0), 0);
  return { family, backend: 'nft', source: 'host', verdict: 'ok', ruleCount, tables, ...extra };
}

export function calicoRuleset(family: Family, options: TableOptions = {}, extra: Partial<IptablesRuleset> = {}): IptablesRuleset {
  return ruleset(family, (['raw', 'mangle', 'nat', 'filter'] as const).map((t) => calicoTable(t, options)), extra);
}

export interface ReportOptions {
  name?: string;
  cluster?: string;
  calico?: CalicoMode | 'none';
  machineId?: string;
  services?: number;
  pods?: number;
}

/** A healthy node's report; pass overrides for the parts a test is about. */
export function buildReport(options: ReportOptions = {}, overrides: Partial<NodeReport> = {}): NodeReport {
  const name = options.name ?? 'node-a';
  const id = options.machineId ?? machineIdFor(name);
  const tableOptions = { calico: options.calico ?? 'append', services: options.services ?? 20, pods: options.pods ?? 30 };
  return {
    schemaVersion: 2,
    agent: { version: '0.1.0' },
    node: { name, ...(options.cluster ? { cluster: options.cluster } : {}) },
    collectedAt: '2025-01-01T00:00:00.000Z',
    machineId: { etc: { status: 'ok', appId: id }, dbus: { status: 'ok', appId: id, linkTarget: '/etc/machine-id' } },
    iptables: [calicoRuleset('ipv4', tableOptions), calicoRuleset('ipv6', tableOptions)],
    nftTables: [
      { family: 'ip', name: 'filter' },
      { family: 'ip', name: 'nat' },
      { family: 'ip', name: 'mangle' },
      { family: 'ip', name: 'raw' },
      { family: 'ip6', name: 'filter' },
      { family: 'ip6', name: 'nat' },
      { family: 'ip6', name: 'mangle' },
      { family: 'ip6', name: 'raw' },
    ],
    illumio: { hostDataDir: false, serverVen: false },
    errors: [],
    ...overrides,
  };
}

/** A busy node (5,000 services, 110 pods) as the agent would describe it. */
export function busyNodeReport(name: string, machineId = machineIdFor(name)): NodeReport {
  return buildReport({ name, machineId, services: 5000, pods: 110, cluster: 'prod-eu-1' });
}

/** Deep copy with a change applied to one built-in chain. */
export function withChain(report: NodeReport, where: { family?: Family; table: string; chain: string }, rules: Rule[], extra: Partial<BuiltinChain> = {}): NodeReport {
  const copy = structuredClone(report);
  for (const set of copy.iptables) {
    if (set.family !== (where.family ?? 'ipv4')) continue;
    const table = set.tables.find((t) => t.name === where.table)!;
    const index = table.builtinChains.findIndex((c) => c.name === where.chain);
    table.builtinChains[index] = chain(where.chain, rules, extra);
  }
  return copy;
}
