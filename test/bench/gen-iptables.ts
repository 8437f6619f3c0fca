// An iptables-restore input shaped like a busy Kubernetes node: kube-proxy in iptables mode with
// S services of E endpoints each (KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-*, about 15 lines per
// service at E = 3), Calico Felix's hooks in Insert or Append mode, Docker's leftovers, and
// optionally a second firewall product's hooks. Load it with the real iptables-restore in a
// scratch network namespace and read it back with iptables-save to get genuine iptables-save
// text (test/bench/tools.ts does; so does test/fixtures/make-fixtures.sh).
//
// For the same options it writes, byte for byte, what the generator the fixtures were first made
// with wrote (shared/tools/gen-iptables.mjs, outside this repository), so that
// test/fixtures/make-fixtures.sh can make them again with this one.
//
//   node dist/test/bench/gen-iptables.js [--services N] [--endpoints E]
//        [--calico insert|append|none] [--other PREFIX] [--other-first]
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

export interface RulesetShape {
  /** kube-proxy services (one ClusterIP port each). */
  services: number;
  /** Endpoints per service; each is a KUBE-SEP-* chain. */
  endpoints: number;
  /** Where Felix puts its jumps in the built-in chains (ChainInsertMode). */
  calico: 'insert' | 'append' | 'none';
  /** Chain prefix of another product that hooks the filter and mangle built-ins. */
  other?: string;
  /** The other product's jump comes before Calico's. */
  otherFirst?: boolean;
}

type Table = 'raw' | 'mangle' | 'nat' | 'filter';

const BUILTINS: Record<Table, string[]> = {
  raw: ['PREROUTING', 'OUTPUT'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
};

// Felix's hooks: built-in chain, Calico chain, and the rule's "cali:<hash>" comment as Felix
// writes it (the hash names the rule, not its position).
const CALICO_HOOKS: Record<Table, [builtin: string, chain: string, hash: string][]> = {
  raw: [['PREROUTING', 'cali-PREROUTING', '6gwbT8clXdHdC1b1'], ['OUTPUT', 'cali-OUTPUT', 'tVnHkvAo15HuiPy0']],
  mangle: [['PREROUTING', 'cali-PREROUTING', '6gwbT8clXdHdC1b1'], ['POSTROUTING', 'cali-POSTROUTING', 'O3lYWMrLQYEMJtB5']],
  nat: [['PREROUTING', 'cali-PREROUTING', '6gwbT8clXdHdC1b1'], ['OUTPUT', 'cali-OUTPUT', 'tVnHkvAo15HuiPy0'], ['POSTROUTING', 'cali-POSTROUTING', 'O3lYWMrLQYEMJtB5']],
  filter: [['INPUT', 'cali-INPUT', 'Cz_u1IQiXIMmKD4c'], ['FORWARD', 'cali-FORWARD', 'wUHhoiAYhphO9Mso'], ['OUTPUT', 'cali-OUTPUT', 'tVnHkvAo15HuiPy0']],
};

/**
 * A stable 16-character suffix in the spirit of kube-proxy's chain names (which hash the service
 * port name); FNV-1a over 48 bits, so that names are unique for any realistic size.
 */
function chainSuffix(s: string): string {
  let x = 2166136261n;
  for (const c of s) x = ((x ^ BigInt(c.charCodeAt(0))) * 16777619n) & 0xffffffffffffn;
  return x.toString(36).toUpperCase().padStart(10, '0').slice(0, 16);
}

interface TableBody {
  chain(name: string): void;
  rule(line: string): void;
}

export function generateIptablesRules(shape: RulesetShape): string {
  const { services, endpoints, calico, other, otherFirst = false } = shape;
  const out: string[] = [];

  // iptables-restore wants every chain declared before the rules that use it.
  const table = (name: Table, body: (api: TableBody) => void) => {
    const chains = new Set<string>();
    const rules: string[] = [];
    body({ chain: (c) => chains.add(c), rule: (r) => rules.push(r) });
    out.push(`*${name}`);
    for (const b of BUILTINS[name]) out.push(`:${b} ACCEPT [0:0]`);
    for (const c of chains) out.push(`:${c} - [0:0]`);
    out.push(...rules, 'COMMIT');
  };

  // The rules of one built-in chain: Calico's jump first (Insert) or last (Append), the other
  // product's jump next to it, and kube-proxy's and Docker's own rules.
  const hooks = (t: Table, api: TableBody, builtin: string, own: string[]) => {
    const cal = calico === 'none'
      ? []
      : CALICO_HOOKS[t].filter(([b]) => b === builtin).map(([b, c, k]) => {
        api.chain(c);
        return `-A ${b} -m comment --comment "cali:${k}" -j ${c}`;
      });
    const oth: string[] = [];
    if (other && (t === 'filter' || t === 'mangle')) {
      api.chain(`${other}${builtin}`);
      oth.push(`-A ${builtin} -j ${other}${builtin}`);
    }
    const seq = calico === 'insert'
      ? (otherFirst ? [...oth, ...cal, ...own] : [...cal, ...oth, ...own])
      : (otherFirst ? [...oth, ...own, ...cal] : [...own, ...oth, ...cal]);
    for (const r of seq) api.rule(r);
  };

  table('raw', (api) => {
    for (const b of BUILTINS.raw) hooks('raw', api, b, []);
  });
  table('mangle', (api) => {
    for (const b of BUILTINS.mangle) hooks('mangle', api, b, []);
  });
  table('nat', (api) => {
    for (const c of ['KUBE-SERVICES', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-NODEPORTS', 'DOCKER']) api.chain(c);
    hooks('nat', api, 'PREROUTING', ['-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES', '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER']);
    hooks('nat', api, 'INPUT', []);
    hooks('nat', api, 'OUTPUT', ['-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES']);
    hooks('nat', api, 'POSTROUTING', ['-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING', '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE']);
    api.rule('-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000');
    api.rule('-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN');
    api.rule('-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0');
    api.rule('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully');
    for (let s = 0; s < services; s++) {
      const ns = `ns${s % 17}`;
      const svc = `svc-${s}`;
      const ip = `10.96.${(s >> 8) & 255}.${s & 255}`;
      const svcChain = `KUBE-SVC-${chainSuffix(`svc${s}`)}`;
      api.chain(svcChain);
      api.rule(`-A KUBE-SERVICES -d ${ip}/32 -p tcp -m comment --comment "${ns}/${svc}:http cluster IP" -m tcp --dport 80 -j ${svcChain}`);
      api.rule(`-A ${svcChain} ! -s 10.244.0.0/16 -d ${ip}/32 -p tcp -m comment --comment "${ns}/${svc}:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ`);
      for (let e = 0; e < endpoints; e++) {
        const sep = `KUBE-SEP-${chainSuffix(`sep${s}.${e}`)}`;
        const n = s * endpoints + e;
        const eip = `10.244.${(n >> 8) & 255}.${n & 255}`;
        api.chain(sep);
        // kube-proxy's even spread: endpoint e of E is taken with probability 1/(E-e).
        const prob = e === endpoints - 1 ? '' : ` -m statistic --mode random --probability ${(1 / (endpoints - e)).toFixed(11)}`;
        api.rule(`-A ${svcChain} -m comment --comment "${ns}/${svc}:http -> ${eip}:8080"${prob} -j ${sep}`);
        api.rule(`-A ${sep} -s ${eip}/32 -m comment --comment "${ns}/${svc}:http" -j KUBE-MARK-MASQ`);
        api.rule(`-A ${sep} -p tcp -m comment --comment "${ns}/${svc}:http" -m tcp -j DNAT --to-destination ${eip}:8080`);
      }
    }
    api.rule('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
  });
  table('filter', (api) => {
    for (const c of ['KUBE-FIREWALL', 'KUBE-FORWARD', 'KUBE-SERVICES', 'DOCKER-USER']) api.chain(c);
    hooks('filter', api, 'INPUT', ['-A INPUT -j KUBE-FIREWALL']);
    hooks('filter', api, 'FORWARD', ['-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD', '-A FORWARD -j DOCKER-USER']);
    hooks('filter', api, 'OUTPUT', ['-A OUTPUT -j KUBE-FIREWALL']);
    api.rule('-A DOCKER-USER -j RETURN');
    api.rule('-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -m mark --mark 0x8000/0x8000 -j DROP');
    api.rule('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT');
  });
  return out.join('\n') + '\n';
}

/** The command line above; unknown options are an error rather than a silently different ruleset. */
export function parseShape(argv: string[]): RulesetShape {
  const { values } = parseArgs({
    args: argv,
    options: {
      services: { type: 'string', default: '100' },
      endpoints: { type: 'string', default: '3' },
      calico: { type: 'string', default: 'insert' },
      other: { type: 'string' },
      'other-first': { type: 'boolean', default: false },
    },
  });
  const count = (name: string, v: string) => {
    if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a whole number, not ${JSON.stringify(v)}`);
    return Number(v);
  };
  if (!['insert', 'append', 'none'].includes(values.calico)) throw new Error(`--calico must be insert, append or none, not ${JSON.stringify(values.calico)}`);
  return {
    services: count('services', values.services),
    endpoints: count('endpoints', values.endpoints),
    calico: values.calico as RulesetShape['calico'],
    ...(values.other ? { other: values.other } : {}),
    otherFirst: values['other-first'],
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.stdout.write(generateIptablesRules(parseShape(process.argv.slice(2))));
}
