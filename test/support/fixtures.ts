// Paths to the fixtures and their hand-written expectations (test/fixtures/expected.json).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { shebangFlags } from '../../scripts/shebang.js';

/** The repository: the nearest directory up from here with a package.json (the benchmarks run this file from dist/). */
export const ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = path.dirname(dir);
  }
  return dir;
})();
export const FIXTURES = path.join(ROOT, 'test/fixtures');
export const IPTABLES_FIXTURES = path.join(FIXTURES, 'iptables');
export const HOST_FIXTURES = path.join(FIXTURES, 'hosts');
/** The agent as it ships: the one file Dockerfile.agent copies (npm run build bundles it). */
export const AGENT_BIN = path.join(ROOT, 'dist/nodeprep-agent.mjs');
export const AGGREGATOR_BIN = path.join(ROOT, 'dist/nodeprep-aggregator.mjs');

/** The node flags on the agent's #! line, which the image's ENTRYPOINT passes too. */
export const agentNodeFlags = (): string[] => shebangFlags(AGENT_BIN);
/** The same for the aggregator. */
export const aggregatorNodeFlags = (): string[] => shebangFlags(AGGREGATOR_BIN);

export interface Expected {
  iptables: Record<string, { verdict: string; incompleteTables?: string[] }>;
  hosts: Record<string, { etc: string; dbus: string; dbusLinkTarget?: string; illumio?: { hostDataDir: boolean; serverVen: boolean } }>;
}

export const expected: Expected = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8'));

/** The real dumps: each `<case>.txt` next to the `<case>.rules` that was loaded to make it. */
export function realDumps(): { name: string; dump: string; rules: string; family: 'ipv4' | 'ipv6'; backend: 'nft' | 'legacy' }[] {
  return readdirSync(IPTABLES_FIXTURES)
    .filter((f) => f.endsWith('.rules'))
    .map((f) => {
      const name = f.slice(0, -'.rules'.length);
      const [, fam, backend] = name.split('.');
      return {
        name,
        dump: readFileSync(path.join(IPTABLES_FIXTURES, `${name}.txt`), 'utf8'),
        rules: readFileSync(path.join(IPTABLES_FIXTURES, f), 'utf8'),
        family: fam === 'v6' ? 'ipv6' : 'ipv4',
        backend: backend === 'legacy' ? 'legacy' : 'nft',
      };
    });
}

/**
 * A deliberately naive reading of iptables-restore input, independent of the parser under test:
 * for every built-in chain (declared with a policy), the targets of its rules in order.
 */
export function builtinTargetsOf(rules: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let table = '';
  const builtin = new Set<string>();
  for (const line of rules.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1);
      builtin.clear();
    }
    const decl = /^:(\S+) (ACCEPT|DROP)/.exec(line);
    if (decl) {
      builtin.add(decl[1]!);
      out.set(`${table}/${decl[1]}`, []);
    }
    const rule = /^-A (\S+) .*-[jg] (\S+)/.exec(line);
    if (rule && builtin.has(rule[1]!)) out.get(`${table}/${rule[1]}`)!.push(rule[2]!);
  }
  return out;
}
