// Is nf_tables in the kernel? Asked without netlink: an nfnetlink message or a bind to the
// nftables multicast group on a kernel without nf_tables makes the kernel load it
// (nfnetlink_rcv_msg and nfnetlink_bind call request_module("nfnetlink-subsys-%d")), a write to
// the host, which the agent never does. So every nft-backed command (iptables-nft-save, nft,
// xtables-monitor) runs only when this says yes, as the legacy saves run only when
// /proc/net/ip_tables_names lists tables (collect-iptables.ts).
import { createReadStream } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { release } from 'node:os';
import path from 'node:path';

/** Where the answer is read from; tests point these at fixtures. */
export interface KernelModulePaths {
  // The agent's own /proc is the host kernel's: /proc/modules is the same for every process.
  procModules: string;
  // Built-in modules are not in /proc/modules. modules.builtin lists them, under the host's
  // /lib/modules/<uname -r>; read only where the host's /lib/modules is mounted (it need not be).
  modulesBuiltin: string;
  // A built-in module with parameters has a /sys/module/<name> directory; sysfs is the host's too.
  sysModule: string;
  // The kernel's symbols, the host's as /proc/modules is: a built-in nf_tables's symbols carry no
  // "[nf_tables]" module suffix. The one place that tells built-in without the host's
  // /lib/modules mounted (the chart does not mount it: a hostPath the pod needs to start).
  kallsyms: string;
}

export function kernelModulePaths(hostRoot: string, over: Partial<KernelModulePaths> = {}): KernelModulePaths {
  return {
    procModules: '/proc/modules',
    modulesBuiltin: path.join(hostRoot, 'lib/modules', release(), 'modules.builtin'),
    sysModule: '/sys/module/nf_tables',
    kallsyms: '/proc/kallsyms',
    ...over,
  };
}

/** What the files said: their text, or why there was none. */
export interface KernelModuleTexts {
  procModules: string | 'missing' | 'unreadable';
  modulesBuiltin?: string;
  sysModuleExists: boolean;
  // Whether /proc/kallsyms has nf_tables's symbols without a module suffix (asked only when
  // nothing else answered; undefined when not asked or unreadable).
  kallsymsBuiltin?: boolean;
}

export type NfTablesState = 'loaded' | 'built-in' | 'no-module-loading' | 'absent';

/** Pure: the decision, from what the files said. Every state but "absent" lets nft commands run. */
export function nfTablesState(texts: KernelModuleTexts): NfTablesState {
  const { procModules } = texts;
  if (procModules !== 'missing' && procModules !== 'unreadable' && /^nf_tables /m.test(procModules)) return 'loaded';
  if (texts.modulesBuiltin !== undefined && /^kernel\/net\/netfilter\/nf_tables\.ko$/m.test(texts.modulesBuiltin)) return 'built-in';
  if (texts.sysModuleExists || texts.kallsymsBuiltin === true) return 'built-in';
  // No /proc/modules at all: a kernel built without module support (CONFIG_MODULES=n), which
  // cannot load a module whatever is asked of it, so an nft command writes nothing to it; and
  // nf_tables, if there, is built in (as on this project's CI machines, where nothing else says so).
  if (procModules === 'missing') return 'no-module-loading';
  // Unreadable (a locked-down /proc; unusual in a container, where /proc/modules is readable
  // with zeroed addresses), or readable without nf_tables: absent. A wrong "absent" costs the
  // nft rulesets in the report; a wrong "present" would load a module into the host.
  return 'absent';
}

export const nfTablesPresent = (state: NfTablesState): boolean => state !== 'absent';

// nft_register_chain_type is exported by nf_tables itself (net/netfilter/nf_tables_api.c): as a
// kallsyms line, "<address> T nft_register_chain_type", with "\t[nf_tables]" after it when a module.
const BUILTIN_SYMBOL = /^\S+ [TtDdRr] nft_register_chain_type$/;

/** Pure: does this kallsyms line say nf_tables is built in? */
export const kallsymsLineBuiltin = (line: string): boolean => BUILTIN_SYMBOL.test(line);

// Built in or not is fixed until the host reboots, and kallsyms is megabytes: asked once a file.
const builtinByKallsyms = new Map<string, Promise<boolean | undefined>>();

function kallsymsBuiltin(file: string): Promise<boolean | undefined> {
  let answer = builtinByKallsyms.get(file);
  if (!answer) {
    answer = (async () => {
      const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
      try {
        for await (const line of lines) if (kallsymsLineBuiltin(line)) return true;
        return false;
      } catch {
        return undefined;
      } finally {
        lines.close();
      }
    })();
    builtinByKallsyms.set(file, answer);
  }
  return answer;
}

/** The I/O edge: reads the files and decides. */
export async function readNfTablesState(paths: KernelModulePaths): Promise<NfTablesState> {
  const [procModules, modulesBuiltin, sysModuleExists] = await Promise.all([
    readFile(paths.procModules, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? ('missing' as const) : ('unreadable' as const))),
    readFile(paths.modulesBuiltin, 'utf8').catch(() => undefined),
    access(paths.sysModule).then(
      () => true,
      () => false,
    ),
  ]);
  const texts: KernelModuleTexts = { procModules, modulesBuiltin, sysModuleExists };
  // Only where the cheap files left it open: a kernel that loads modules, nf_tables not loaded.
  if (nfTablesState(texts) === 'absent') {
    const builtin = await kallsymsBuiltin(paths.kallsyms);
    if (builtin !== undefined) texts.kallsymsBuiltin = builtin;
  }
  return nfTablesState(texts);
}
