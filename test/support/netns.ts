// Network namespaces for tests: created with the real `ip netns add`, always removed.
import { execFileSync, spawnSync } from 'node:child_process';

let counter = 0;

/** Why this machine cannot run namespace tests, or undefined when it can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'namespace tests need root (ip netns add)';
  const probe = `npprobe${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.status !== 0) return `cannot create a network namespace: ${(add.stderr || add.error?.message || '').trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  for (const bin of ['iptables-nft-restore', 'iptables-nft-save', 'iptables-legacy-restore']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed (Debian package iptables)`;
  }
  return undefined;
}

export interface Netns {
  name: string;
  /** Runs a command inside the namespace and returns its stdout; throws with stderr on failure. */
  exec(cmd: string, args: string[], input?: string): string;
  remove(): void;
}

export function createNetns(prefix = 'nptest'): Netns {
  const name = `${prefix}${process.pid}x${counter++}`;
  execFileSync('ip', ['netns', 'add', name]);
  let removed = false;
  return {
    name,
    exec(cmd, args, input) {
      return execFileSync('ip', ['netns', 'exec', name, cmd, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
    },
    remove() {
      if (removed) return;
      removed = true;
      spawnSync('ip', ['netns', 'del', name]);
    },
  };
}
