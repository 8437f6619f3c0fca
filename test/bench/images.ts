// What each image's final stage adds to its base image (node:24-bookworm-slim), computed without
// a Docker engine from what Dockerfile.agent and Dockerfile.aggregator copy (issue 13, item 2):
// the agent's bundle; the aggregator's node_modules as `npm ci --omit=dev` installs them (the
// lock file's non-dev packages, measured in this checkout's node_modules), its package.json and
// its tsc output. The agent image's Debian packages (iptables, nftables) come on top of its figure.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './tools.js';

interface Lockfile {
  packages: Record<string, { dev?: boolean }>;
}

/** Bytes and files under `dir`, leaving out nested node_modules (the lock file lists those apart). */
function treeSize(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules') walk(full);
      } else if (e.isFile()) {
        bytes += statSync(full).size;
        files++;
      }
    }
  };
  walk(dir);
  return { bytes, files };
}

function fileOrTree(rel: string): { bytes: number; files: number } {
  const full = path.join(ROOT, rel);
  return statSync(full).isDirectory() ? treeSize(full) : { bytes: statSync(full).size, files: 1 };
}

/** node_modules as `npm ci --omit=dev` would install it from package-lock.json. */
function runtimeNodeModules(): { bytes: number; files: number; packages: number } {
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as Lockfile;
  // Optional packages for other platforms are in the lock file but not installed: npm ci skips them too.
  const entries = Object.entries(lock.packages).filter(([where, p]) => where.startsWith('node_modules/') && !p.dev && existsSync(path.join(ROOT, where)));
  let bytes = 0;
  let files = 0;
  for (const [where] of entries) {
    const size = treeSize(path.join(ROOT, where));
    bytes += size.bytes;
    files += size.files;
  }
  return { bytes, files, packages: entries.length };
}

export async function benchImages(): Promise<void> {
  const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
  const modules = runtimeNodeModules();
  const sum = (parts: string[]) => parts.map(fileOrTree).reduce((a, b) => ({ bytes: a.bytes + b.bytes, files: a.files + b.files }), { bytes: 0, files: 0 });
  const agent = fileOrTree('dist/nodeprep-agent.mjs');
  const aggregator = fileOrTree('dist/nodeprep-aggregator.mjs');
  const before = (program: string) => sum(['package.json', `dist/${program}`, 'dist/protocol']);
  console.log('images: what the final stage copies onto node:24-bookworm-slim');
  console.log(`  agent       ${mb(agent.bytes).padStart(9)} in ${agent.files} file: dist/nodeprep-agent.mjs (plus Debian's iptables and nftables)`);
  console.log(`  aggregator  ${mb(aggregator.bytes).padStart(9)} in ${aggregator.files} file: dist/nodeprep-aggregator.mjs`);
  for (const [program, bundle] of [['agent', agent], ['aggregator', aggregator]] as const) {
    const unbundled = before(program);
    console.log(`  the ${program} unbundled: ${mb(modules.bytes + unbundled.bytes)} in ${modules.files + unbundled.files} files (node_modules of ${modules.packages} packages, dist/${program}, dist/protocol); the bundle is ${((bundle.bytes / (modules.bytes + unbundled.bytes)) * 100).toFixed(1)}% of that`);
  }
}
