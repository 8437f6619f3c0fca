// The images' smoke tests' side of podman: build (or reuse) the images with images/build.sh,
// run podman in the storage that script keeps, inside network namespaces the tests make, and
// clean up what they start: containers, namespaces and temporary folders, also when a test fails
// or is stopped, and what a killed earlier run left behind (found by the PID in their names).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../support/fixtures.js';
import { atProcessEnd } from '../support/process-end.js';

export const BUILD_SCRIPT = path.join(ROOT, 'images/build.sh');
// Containers are named npimg-<pid>-<n>, namespaces npimg<pid>x<n>, folders nodeprep-images-test-<pid>-*.
const CONTAINER = /^npimg-(\d+)-/;
const NAMESPACE = /^npimg(\d+)x/;
const TMP_PREFIX = 'nodeprep-images-test-';

export interface BuiltImage {
  image: string;
  id: string;
  size: number;
}

export interface Built {
  base: string;
  agent: BuiltImage;
  aggregator: BuiltImage;
  /** The script's "images: ..." lines: what it reused, built, and each step's time. */
  log: string[];
}

/**
 * Builds the images, or reuses them (images/build.sh keeps its own layer cache): the images tested
 * are always those of this working tree. Returns why they cannot be built here when the script
 * says so (exit 3: not root, tools missing and not installable); throws when a build fails.
 */
export function buildImages(): Built | { cannot: string } {
  if (process.getuid?.() !== 0) return { cannot: 'the image tests need root (buildah and podman as root, ip netns)' };
  const run = spawnSync('bash', [BUILD_SCRIPT, '--no-save'], { encoding: 'utf8', timeout: 20 * 60_000, killSignal: 'SIGTERM', maxBuffer: 64 << 20 });
  const log = (run.stderr ?? '').split('\n').filter((l) => l.startsWith('images: '));
  if (run.status === 3) return { cannot: (log.at(-1) ?? 'images/build.sh cannot build here').replace(/^images: /, '') };
  if (run.status !== 0) throw new Error(`images/build.sh failed (${run.error?.message ?? `exit ${run.status}`}):\n${(run.stderr ?? '').slice(-4000)}`);
  const lastLine = run.stdout.trim().split('\n').at(-1) ?? '';
  return { ...(JSON.parse(lastLine) as Omit<Built, 'log'>), log };
}

/** The CONTAINERS_* variables that point podman at images/build.sh's storage and config. */
export function podmanEnv(): NodeJS.ProcessEnv {
  const out = spawnSync('bash', [BUILD_SCRIPT, '--env'], { encoding: 'utf8', timeout: 30_000 });
  if (out.status !== 0) throw new Error(`images/build.sh --env failed: ${out.stderr}`);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const m of out.stdout.matchAll(/^export (\w+)='(.*)'$/gm)) env[m[1]!] = m[2]!;
  if (!env.CONTAINERS_STORAGE_CONF) throw new Error(`images/build.sh --env printed no storage config: ${out.stdout}`);
  return env;
}

export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

let counter = 0;

/** One test run's containers, namespaces and folders; cleanup() removes all of them. */
export class Scratch {
  /** Each container, and the namespace podman ran in (its mounts live in that mount namespace). */
  readonly containers = new Map<string, string | undefined>();
  readonly namespaces: string[] = [];
  readonly dirs: string[] = [];
  private cleaned = false;

  constructor(readonly env: NodeJS.ProcessEnv) {
    removeLeftovers(env);
    atProcessEnd(() => this.cleanup());
  }

  /** A name for a container that podman will run in namespace `netns` (or the host's). */
  containerName(netns?: string): string {
    const name = `npimg-${process.pid}-${counter++}`;
    this.containers.set(name, netns);
    return name;
  }

  /** A network namespace of the test's own, its loopback up. */
  namespace(): string {
    const name = `npimg${process.pid}x${counter++}`;
    mustRun('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    mustRun('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  dir(): string {
    const dir = mkdtempSync(path.join(os.tmpdir(), `${TMP_PREFIX}${process.pid}-`));
    this.dirs.push(dir);
    return dir;
  }

  /** podman ARGS, inside namespace `netns` when given; killed after `timeoutMs`. */
  podman(args: string[], opts: { netns?: string; timeoutMs?: number } = {}): Promise<Result> {
    const argv = opts.netns ? [...inNamespace(opts.netns), 'podman', ...args] : ['podman', ...args];
    return run(argv, this.env, opts.timeoutMs ?? 60_000);
  }

  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    // Containers first: a running one keeps its namespace's network alive.
    for (const [name, netns] of this.containers) {
      const rm = ['podman', 'rm', '--force', '--time', '0', '--ignore', name];
      const argv = netns ? [...inNamespace(netns), ...rm] : rm;
      spawnSync(argv[0]!, argv.slice(1), { env: this.env, stdio: 'ignore', timeout: 60_000 });
    }
    for (const ns of this.namespaces) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    for (const dir of this.dirs) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The command prefix that runs a program in network namespace `netns`. nsenter, not
 * `ip netns exec`: that one also mounts a new /sys, which hides the cgroup mounts runc needs.
 */
export function inNamespace(netns: string): string[] {
  return ['nsenter', `--net=/run/netns/${netns}`];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** What a killed earlier run left: its containers, namespaces and folders (its PID is gone). */
function removeLeftovers(env: NodeJS.ProcessEnv): void {
  const names = spawnSync('podman', ['ps', '--all', '--format', '{{.Names}}'], { env, encoding: 'utf8', timeout: 30_000 }).stdout ?? '';
  const stale = names.split('\n').filter((n) => {
    const m = CONTAINER.exec(n);
    return m !== null && !alive(Number(m[1]));
  });
  if (stale.length > 0) spawnSync('podman', ['rm', '--force', '--time', '0', '--ignore', ...stale], { env, stdio: 'ignore', timeout: 60_000 });
  const netns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of netns.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = NAMESPACE.exec(name);
    if (m && !alive(Number(m[1]))) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  }
  for (const entry of readdirSync(os.tmpdir())) {
    const m = new RegExp(`^${TMP_PREFIX}(\\d+)-`).exec(entry);
    if (m && !alive(Number(m[1]))) rmSync(path.join(os.tmpdir(), entry), { recursive: true, force: true });
  }
}

export function mustRun(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr}`);
  return r.stdout;
}

/** Runs a command to its end or until `timeoutMs`, when it is killed (status null). */
export function run(argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number, input?: string): Promise<Result> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.end(input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => (stderr += err.message));
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** The HTTP answer of `url` as seen from inside namespace `netns` (with this Node.js). */
export async function fetchInNamespace(netns: string, url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: string }> {
  const script = 'const [url, init] = JSON.parse(process.argv[1]); fetch(url, { ...init, signal: AbortSignal.timeout(5000) }).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })), (e) => { process.stdout.write(JSON.stringify({ status: 0, body: String(e.cause ?? e) })); });';
  const r = await run([...inNamespace(netns), process.execPath, '-e', script, JSON.stringify([url, init])], process.env, 10_000);
  if (r.status !== 0) throw new Error(`fetch in ${netns} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { status: number; body: string };
}

/** Polls `probe` until it returns a value other than undefined, for at most `seconds`. */
export async function eventually<T>(what: string, seconds: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
