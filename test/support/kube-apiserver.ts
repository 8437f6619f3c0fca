// A real Kubernetes API server for the tests: etcd and kube-apiserver built from Go modules by
// test/kube/build.sh, started on loopback with free ports, a temporary data directory, RBAC, a
// ServiceAccount issuer and signing key. Tests get an admin client, kubeconfigs, and tokens of
// ServiceAccounts from TokenRequest, so that RBAC and TokenReview are exercised for real.
//
// Both processes are stopped by PID and the directory is removed when the test ends, fails or is
// stopped by a signal; what a killed earlier run left behind is removed at the next start (its
// directory records the PIDs and the PID of the test that owned them).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Agent, request } from 'undici';
import { parse } from 'yaml';
import { answerOf } from '../../aggregator/answer.js';
import { ROOT } from './fixtures.js';
import { atProcessEnd } from './process-end.js';

const STATE_PREFIX = 'nodeprep-kube-';
const BUILD_SCRIPT = path.join(ROOT, 'test/kube/build.sh');

/** The folder test/kube/build.sh builds into, or undefined without Go. */
export function kubeBinDir(): string | undefined {
  try {
    const dir = execFileSync('bash', [BUILD_SCRIPT, '--dir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return dir === '' ? undefined : dir;
  } catch {
    return undefined;
  }
}

/**
 * Why the API server tests cannot run here, or undefined when they can. In CI (CI=true) the
 * caller must fail instead of skipping: see requireKube().
 */
export function kubeUnavailable(binaries: string[] = ['etcd', 'kube-apiserver']): string | undefined {
  const dir = kubeBinDir();
  if (dir === undefined) return 'Kubernetes API server tests need Go to build kube-apiserver and etcd (install Go 1.26+, then `bash test/kube/build.sh`)';
  const missing = binaries.filter((b) => !existsSync(path.join(dir, b)));
  if (missing.length > 0) {
    const flag = missing.some((b) => !['etcd', 'kube-apiserver'].includes(b)) ? ' --cluster' : '';
    return `${missing.join(', ')} not built yet: run \`bash test/kube/build.sh${flag}\` (minutes the first time, reused after)`;
  }
  return undefined;
}

/**
 * For a test file: the reason to skip it, or undefined to run it. In CI the tests must not skip,
 * so a missing API server is an error there.
 */
export function requireKube(binaries?: string[]): string | undefined {
  const why = kubeUnavailable(binaries);
  if (why && process.env.CI === 'true') throw new Error(`CI=true and the Kubernetes API server tests cannot run: ${why}`);
  return why;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type KubeObject = { apiVersion?: string; kind?: string; metadata: { name: string; namespace?: string; [k: string]: any }; [k: string]: any };

export interface StartOptions {
  /** Extra kube-apiserver flags. */
  flags?: string[];
}

export class ApiServer {
  readonly dir: string;
  readonly adminToken = randomBytes(16).toString('hex');
  url = '';
  ca = '';
  readonly caFile: string;
  readonly adminKubeconfig: string;
  private etcd?: ChildProcess;
  private apiserver?: ChildProcess;
  private etcdPort = 0;
  private peerPort = 0;
  private port = 0;
  private dispatcher?: Agent;
  readonly bin: string;
  private readonly flags: string[];
  private readonly logs: Record<string, string> = { etcd: '', apiserver: '' };
  // Other processes of the test cluster (controller-manager, scheduler, kwok), stopped with it.
  private readonly others = new Map<string, ChildProcess>();

  private constructor(bin: string, options: StartOptions) {
    this.bin = bin;
    this.flags = options.flags ?? [];
    removeStaleServers();
    this.dir = mkdtempSync(path.join(os.tmpdir(), `${STATE_PREFIX}${process.pid}-`));
    this.caFile = path.join(this.dir, 'certs', 'apiserver.crt');
    this.adminKubeconfig = path.join(this.dir, 'admin.kubeconfig');
  }

  static async start(options: StartOptions = {}): Promise<ApiServer> {
    const bin = kubeBinDir();
    if (!bin) throw new Error(kubeUnavailable() ?? 'no Kubernetes binaries');
    const server = new ApiServer(bin, options);
    atProcessEnd(() => server.stopSync());
    try {
      await server.boot();
    } catch (err) {
      server.stopSync();
      throw err;
    }
    return server;
  }

  private async boot(): Promise<void> {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    writeFileSync(path.join(this.dir, 'sa.key'), privateKey, { mode: 0o600 });
    writeFileSync(path.join(this.dir, 'tokens.csv'), `${this.adminToken},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });
    [this.etcdPort, this.peerPort, this.port] = [await freePort(), await freePort(), await freePort()];
    this.url = `https://127.0.0.1:${this.port}`;
    this.startEtcd();
    await waitFor('etcd healthy', 20, async () => {
      const res = await fetch(`http://127.0.0.1:${this.etcdPort}/health`).catch(() => undefined);
      return res?.ok === true;
    }, () => this.recentLogs());
    await this.startApiServer();
  }

  private track(child: ChildProcess, which: string): void {
    const keep = (d: Buffer) => {
      // The last 16 KiB, for failure messages.
      this.logs[which] = (this.logs[which] + d.toString()).slice(-16_384);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.writePids();
  }

  private writePids(): void {
    const pids = [process.pid, this.etcd?.pid, this.apiserver?.pid, ...[...this.others.values()].map((c) => c.pid)];
    writeFileSync(path.join(this.dir, 'pids'), pids.filter(Boolean).join('\n') + '\n');
  }

  /**
   * Starts another binary of the build folder against this server (kube-controller-manager,
   * kube-scheduler, kwok), stopped and cleaned up with it; `args` may use the admin kubeconfig.
   */
  spawnComponent(name: string, args: string[]): ChildProcess {
    const child = spawn(path.join(this.bin, name), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.others.set(name, child);
    this.logs[name] = '';
    this.track(child, name);
    return child;
  }

  /** Where the ServiceAccount signing key is (the controller-manager signs tokens with it). */
  get serviceAccountKey(): string {
    return path.join(this.dir, 'sa.key');
  }

  private startEtcd(): void {
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const client = `http://127.0.0.1:${this.etcdPort}`;
    this.etcd = spawn(path.join(this.bin, 'etcd'), [
      '--data-dir', path.join(this.dir, 'etcd'),
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `default=${peer}`,
      // Test data: durability on power loss is not needed, and fsync is most of etcd's latency.
      '--unsafe-no-fsync',
      '--quota-backend-bytes', String(8 * 1024 ** 3),
      '--log-level', 'warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.track(this.etcd, 'etcd');
  }

  /** kube-apiserver's flags for this server's etcd, certificates and keys, on `port`. */
  private apiServerArgs(port: number): string[] {
    return [
      `--etcd-servers=http://127.0.0.1:${this.etcdPort}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${port}`,
      // A second server (startPeer) finds the first one's serving certificate here and uses it.
      `--cert-dir=${path.join(this.dir, 'certs')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${path.join(this.dir, 'sa.key')}`,
      `--service-account-signing-key-file=${path.join(this.dir, 'sa.key')}`,
      `--token-auth-file=${path.join(this.dir, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      '--service-cluster-ip-range=10.0.0.0/16',
      '--endpoint-reconciler-type=none',
      '--allow-privileged=true',
      '--profiling=false',
      ...this.flags,
    ];
  }

  /** Starts kube-apiserver on this server's port and waits for /readyz. */
  async startApiServer(): Promise<void> {
    this.apiserver = spawn(path.join(this.bin, 'kube-apiserver'), this.apiServerArgs(this.port), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.track(this.apiserver, 'apiserver');
    await waitFor('kube-apiserver /readyz', 60, async () => {
      if (!existsSync(this.caFile)) return false;
      this.ca = readFileSync(this.caFile, 'utf8');
      await this.dispatcher?.close();
      this.dispatcher = new Agent({ connect: { ca: this.ca } });
      const res = await this.request('GET', '/readyz').catch(() => undefined);
      return res?.status === 200;
    }, () => this.recentLogs());
    writeFileSync(this.adminKubeconfig, this.kubeconfigText(this.adminToken, 'admin'), { mode: 0o600 });
  }

  /**
   * A second kube-apiserver on the same etcd, certificate and keys, on a port of its own, as in
   * an HA control plane where either server answers any client; `flags` come after this server's
   * (a later flag wins). Stopped with this server; resolves once its /readyz says ok.
   */
  async startPeer(flags: string[] = []): Promise<{ port: number; stop: () => Promise<void> }> {
    const port = await freePort();
    const child = this.spawnComponent('kube-apiserver', [...this.apiServerArgs(port), ...flags]);
    await waitFor('the second kube-apiserver /readyz', 60, async () => {
      const res = await request(`https://127.0.0.1:${port}/readyz`, { dispatcher: this.dispatcher, headers: { authorization: `Bearer ${this.adminToken}` } }).catch(() => undefined);
      await res?.body.dump();
      return res?.statusCode === 200;
    }, () => this.recentLogs());
    return { port, stop: () => stopGracefully(child, 10_000) };
  }

  /** Stops kube-apiserver only (etcd keeps the data): for tests of what survives an outage. */
  async stopApiServer(): Promise<void> {
    const child = this.apiserver;
    this.apiserver = undefined;
    await stopGracefully(child, 10_000);
  }

  /** The admin's kubeconfig with another identity's bearer token, written to a file. */
  kubeconfigFor(token: string, name: string): string {
    const file = path.join(this.dir, `${name}.kubeconfig`);
    writeFileSync(file, this.kubeconfigText(token, name), { mode: 0o600 });
    return file;
  }

  private kubeconfigText(token: string, user: string): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: test',
      '  cluster:',
      `    server: ${this.url}`,
      `    certificate-authority-data: ${Buffer.from(this.ca).toString('base64')}`,
      'users:',
      `- name: ${user}`,
      '  user:',
      `    token: ${token}`,
      'contexts:',
      '- name: test',
      '  context:',
      '    cluster: test',
      `    user: ${user}`,
      'current-context: test',
      '',
    ].join('\n');
  }

  /** A request to the API as the admin, or as the holder of `token`. */
  async request<T = KubeObject>(method: string, apiPath: string, body?: unknown, options: { token?: string; contentType?: string } = {}): Promise<ApiResponse<T>> {
    const res = await request(`${this.url}${apiPath}`, {
      method: method as 'GET',
      dispatcher: this.dispatcher,
      headers: {
        authorization: `Bearer ${options.token ?? this.adminToken}`,
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': options.contentType ?? 'application/json' }),
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    return answerOf<T>(res);
  }

  /** Like request(), but throws unless the status is 2xx. */
  async must<T = KubeObject>(method: string, apiPath: string, body?: unknown, options: { token?: string; contentType?: string } = {}): Promise<T> {
    const res = await this.request<T>(method, apiPath, body, options);
    if (res.status < 200 || res.status > 299) throw new Error(`${method} ${apiPath}: ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
    return res.body;
  }

  /** Creates an object at its collection's path (derived from apiVersion, kind and namespace). */
  async create(obj: KubeObject): Promise<KubeObject> {
    return this.must('POST', collectionPath(obj), obj);
  }

  /** Replaces a Node's (or any object's) status through the status subresource. */
  async patchStatus(objectPath: string, status: unknown): Promise<KubeObject> {
    return this.must('PATCH', `${objectPath}/status`, { status }, { contentType: 'application/merge-patch+json' });
  }

  /** Creates the CRDs of test/fixtures/crds/<name>.yaml and waits until each is established. */
  async installCrds(...names: string[]): Promise<void> {
    for (const name of names) {
      const crd = parse(readFileSync(path.join(ROOT, 'test/fixtures/crds', `${name}.yaml`), 'utf8')) as KubeObject;
      const res = await this.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
      if (res.status !== 201 && res.status !== 409) throw new Error(`CRD ${name}: ${res.status} ${JSON.stringify(res.body)}`);
      await waitFor(`CRD ${crd.metadata.name} established`, 30, async () => {
        const got = await this.must('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        return ((got.status?.conditions ?? []) as { type: string; status: string }[]).some((c) => c.type === 'Established' && c.status === 'True');
      }, () => '');
    }
  }

  /** A namespace with its default ServiceAccount (what the controller-manager, absent here, would add). */
  async ensureNamespace(name: string, labels: Record<string, string> = {}): Promise<void> {
    const res = await this.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
    if (res.status !== 201 && res.status !== 409) throw new Error(`namespace ${name}: ${res.status} ${JSON.stringify(res.body)}`);
    const sa = await this.request('POST', `/api/v1/namespaces/${name}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } });
    if (sa.status !== 201 && sa.status !== 409) throw new Error(`namespace ${name}, default ServiceAccount: ${sa.status} ${JSON.stringify(sa.body)}`);
  }

  /**
   * A token of a ServiceAccount from TokenRequest, as the kubelet gets for a projected volume.
   * `boundPod` binds it to a Pod (the API server then adds the pod's node to its claims).
   */
  async serviceAccountToken(namespace: string, serviceAccount: string, options: { audiences?: string[]; expirationSeconds?: number; boundPod?: { name: string; uid: string } } = {}): Promise<string> {
    const body = {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        audiences: options.audiences ?? [],
        expirationSeconds: options.expirationSeconds ?? 3600,
        ...(options.boundPod ? { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: options.boundPod.name, uid: options.boundPod.uid } } : {}),
      },
    };
    const res = await this.must<{ status: { token: string } }>('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`, body);
    return res.status.token;
  }

  /** Kills both processes and removes the directory; safe to call twice. */
  stopSync(): void {
    for (const child of [...this.others.values(), this.apiserver, this.etcd]) if (child && child.exitCode === null) child.kill('SIGKILL');
    void this.dispatcher?.close().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }

  async stop(): Promise<void> {
    await this.stopApiServer();
    await stopGracefully(this.etcd, 5_000);
    this.stopSync();
  }

  /** What the processes printed last, for a failure message. */
  /** The components (spawnComponent) that have exited, with their exit code or signal. */
  exited(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, child] of this.others) if (child.exitCode !== null || child.signalCode !== null) out[name] = String(child.exitCode ?? child.signalCode);
    return out;
  }

  recentLogs(): string {
    return Object.entries(this.logs).map(([name, text]) => `--- ${name} ---\n${text}`).join('\n');
  }
}

const CORE_KINDS: Record<string, string> = {
  Namespace: 'namespaces', Node: 'nodes', Pod: 'pods', ServiceAccount: 'serviceaccounts', ConfigMap: 'configmaps', Secret: 'secrets', Service: 'services',
};

/** /api/v1/namespaces/NS/pods for a Pod, /apis/apps/v1/namespaces/NS/daemonsets for a DaemonSet... */
export function collectionPath(obj: KubeObject): string {
  const version = obj.apiVersion ?? 'v1';
  const kind = obj.kind ?? '';
  const lower = kind.toLowerCase();
  const plural = CORE_KINDS[kind] ?? (lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : lower.endsWith('s') ? `${lower}es` : `${lower}s`);
  const base = version.includes('/') ? `/apis/${version}` : `/api/${version}`;
  const ns = obj.metadata.namespace;
  return ns ? `${base}/namespaces/${ns}/${plural}` : `${base}/${plural}`;
}

/** SIGTERM, and SIGKILL if it has not exited within `ms`. */
async function stopGracefully(child: ChildProcess | undefined, ms: number): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, ms))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/** Kills and removes what a killed earlier test run left behind. */
function removeStaleServers(): void {
  for (const entry of readdirSync(os.tmpdir())) {
    if (!entry.startsWith(STATE_PREFIX)) continue;
    const dir = path.join(os.tmpdir(), entry);
    let pids: number[];
    try {
      pids = readFileSync(path.join(dir, 'pids'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      pids = [Number(entry.slice(STATE_PREFIX.length).split('-')[0])];
    }
    const [owner, ...children] = pids;
    if (owner !== undefined && alive(owner)) continue;
    for (const pid of children) if (alive(pid)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(what: string, seconds: number, check: () => Promise<boolean>, logs: () => string): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${seconds} s\n${logs()}`);
}

/** A directory for a test's files that is removed with the server. */
export function scratchDir(server: ApiServer, name: string): string {
  const dir = path.join(server.dir, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}
