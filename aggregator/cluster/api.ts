// The aggregator's way to the Kubernetes API (design.md section 9): @kubernetes/client-node loads
// the configuration the usual way (in-cluster when running in a pod, KUBECONFIG or ~/.kube/config
// otherwise) and authenticates requests; its informers watch (informers.ts). Requests whose
// answers are large (lists of thousands of Nodes) or frequent (TokenReviews) go through request()
// below as plain JSON, so that no class instance is made per object and one connection pool
// serves them all.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { request, type Dispatcher } from 'undici';
import { answerOf } from '../answer.js';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * client-node makes a new connection pool (undici Agent) for every request it authenticates, so
 * every request and every watch would open a new TLS connection. This keeps the first pool and
 * gives it to every later request; the headers (a rotated token) are still worked out each time.
 */
class PooledKubeConfig extends KubeConfig {
  private pool: Dispatcher | undefined;

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getDispatcher();
    if (!fresh) return;
    if (this.pool === undefined) this.pool = fresh;
    else if (fresh !== this.pool) void fresh.close().catch(() => {});
    context.setDispatcher(this.pool);
  }

  async closePool(): Promise<void> {
    await this.pool?.close().catch(() => {});
  }
}

export type ClusterAccess = { api: KubeApi; source: string } | { off: string };

/**
 * Where the cluster is, or why the cluster view is off: CLUSTER_VIEW=off, or neither an
 * in-cluster ServiceAccount nor a kubeconfig (local mode, an aggregator outside any cluster).
 */
export function loadClusterAccess(env: Record<string, string | undefined>, setting: 'auto' | 'off'): ClusterAccess {
  if (setting === 'off') return { off: 'CLUSTER_VIEW=off' };
  const kc = new PooledKubeConfig();
  if (env.KUBERNETES_SERVICE_HOST && existsSync(SERVICE_ACCOUNT_TOKEN)) {
    kc.loadFromCluster();
    return { api: new KubeApi(kc), source: 'in-cluster ServiceAccount' };
  }
  const home = env.HOME ?? os.homedir();
  const kubeconfig = env.KUBECONFIG ? env.KUBECONFIG.split(path.delimiter).filter(existsSync) : [];
  const fallback = path.join(home, '.kube', 'config');
  if (kubeconfig.length === 0 && !existsSync(fallback)) {
    return { off: env.KUBECONFIG ? `KUBECONFIG names no file that exists (${env.KUBECONFIG})` : 'no in-cluster ServiceAccount, no KUBECONFIG and no ~/.kube/config' };
  }
  // One file is read as given; several (KUBECONFIG=a:b) are merged as kubectl merges them.
  if (kubeconfig.length > 1) kc.loadFromDefault();
  else kc.loadFromFile(kubeconfig[0] ?? fallback);
  if (!kc.getCurrentCluster()) return { off: 'the kubeconfig has no current cluster' };
  return { api: new KubeApi(kc), source: kubeconfig.length > 0 ? `KUBECONFIG ${kubeconfig.join(path.delimiter)}` : fallback };
}

export interface ApiAnswer<T> {
  status: number;
  body: T;
}

/** A failed call, with the API's status code (403: forbidden, 404: not served, ...). */
export class KubeApiError extends Error {
  override name = 'KubeApiError';
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

export type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface RequestOptions {
  accept?: string;
  // The body's type when it is not plain JSON, e.g. application/apply-patch+yaml for server-side
  // apply (a JSON body is valid YAML) or application/merge-patch+json.
  contentType?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  // How the request is counted (list, get, tokenreview...); by default from the method and path.
  kind?: string;
}

/**
 * Requests to the API server at once (watches aside). The first reports of thousands of agents
 * each need a TokenReview; they wait in line here rather than arrive at the API server together,
 * as client-go's clients are held to a rate too. A review takes milliseconds, so the line moves.
 */
const MAX_IN_FLIGHT = 8;

export class KubeApi {
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  readonly server: string;
  // Requests made, by kind (list, watch, tokenreview, ...), for the metrics: what the aggregator
  // costs the API server.
  readonly requests = new Map<string, number>();

  constructor(readonly config: KubeConfig) {
    this.server = config.getCurrentCluster()?.server ?? '';
  }

  counted(kind: string): void {
    this.requests.set(kind, (this.requests.get(kind) ?? 0) + 1);
  }

  /** A request with the configured identity; the body, when any, is JSON. Never throws on a status. */
  async request<T = unknown>(method: Method, apiPath: string, body?: unknown, options: RequestOptions = {}): Promise<ApiAnswer<T>> {
    this.counted(options.kind ?? (method === 'POST' ? apiPath.split('/').pop()!.replace(/s$/, '') : method.toLowerCase()));
    await this.slot();
    try {
      const context = new RequestContext(`${this.server}${apiPath}`, HttpMethod[method]);
      await this.config.applySecurityAuthentication(context);
      const timeout = AbortSignal.timeout(options.timeoutMs ?? 30_000);
      const res = await request(context.getUrl(), {
        method,
        dispatcher: context.getDispatcher(),
        headers: {
          ...context.getHeaders(),
          accept: options.accept ?? 'application/json',
          ...(body === undefined ? {} : { 'content-type': options.contentType ?? 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
      });
      return await answerOf<T>(res);
    } finally {
      this.release();
    }
  }

  /** Waits for one of the MAX_IN_FLIGHT places. */
  private slot(): Promise<void> | undefined {
    if (this.inFlight < MAX_IN_FLIGHT) {
      this.inFlight++;
      return undefined;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next(); // the place goes to the next request as it is
    else this.inFlight--;
  }

  /** Like request(), but a status other than 2xx is a KubeApiError with the API's message. */
  async call<T>(method: Method, apiPath: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    const res = await this.request<T>(method, apiPath, body, options);
    if (res.status >= 200 && res.status < 300) return res.body;
    const message = typeof res.body === 'object' && res.body !== null && 'message' in res.body ? String((res.body as { message: unknown }).message) : String(res.body).slice(0, 200);
    throw new KubeApiError(res.status, `${method} ${apiPath.split('?')[0]}: ${res.status} ${message}`);
  }

  async close(): Promise<void> {
    if (this.config instanceof PooledKubeConfig) await this.config.closePool();
  }
}
