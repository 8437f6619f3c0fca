// The aggregator's way to the Kubernetes API (design.md section 9): @kubernetes/client-node loads
// the configuration the usual way (in-cluster when running in a pod, KUBECONFIG or ~/.kube/config
// otherwise) and authenticates requests; the informers watch (informers.ts). Requests whose
// answers are large (lists of thousands of Nodes) or frequent (TokenReviews) go through request()
// below as plain JSON, so that no class instance is made per object and one connection pool
// serves them all, each in its lane (lanes.ts) and within its deadline.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { request, type Dispatcher } from 'undici';
import { answerOf } from '../answer.js';
import { Lane, type LaneLimits } from './lanes.js';

export { KubeApiBusyError } from './lanes.js';

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

/** No answer within the request's deadline, which counts the wait for a place in its lane. */
export class KubeApiTimeoutError extends Error {
  override name = 'KubeApiTimeoutError';
  constructor(
    method: string,
    apiPath: string,
    readonly timeoutMs: number,
    readonly waitedMs: number,
    lane: LaneName,
  ) {
    super(`${method} ${apiPath.split('?')[0]}: no answer within ${seconds(timeoutMs)} s (${seconds(waitedMs)} s of it waiting for a place in the ${lane} lane)`);
  }
}

const seconds = (ms: number) => (ms / 1000).toFixed(1);

export type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

/**
 * Requests to the API server at once, and waiting, per lane (lanes.ts); watches use connections
 * of their own, outside every lane. A review takes milliseconds: 8 at once empty a line of 256 in
 * well under a second, and a longer line would only hold agents past their deadline, where a 503
 * with Retry-After sends them back later (the first reports of 5,000 agents after a restart).
 */
export const LANES = {
  // TokenReviews, SubjectAccessReviews and pod look-ups: the access layer's questions.
  reviews: { inFlight: 8, waiting: 256 },
  // The cluster view's lists (a page each) and the Illumio checks' pod count: never behind reviews.
  view: { inFlight: 4, waiting: 64 },
  // The outlets (publish/): server-side apply, Events and their discovery and reads.
  writes: { inFlight: 2, waiting: 128 },
} satisfies Record<string, LaneLimits>;

export type LaneName = keyof typeof LANES;

export interface RequestOptions {
  accept?: string;
  // The body's type when it is not plain JSON, e.g. application/apply-patch+yaml for server-side
  // apply (a JSON body is valid YAML) or application/merge-patch+json.
  contentType?: string;
  // The request's deadline, from the call: the wait for a place in its lane counts. 30 s unless set.
  timeoutMs?: number;
  signal?: AbortSignal;
  // How the request is counted (list, get, tokenreview...); by default from the method and path.
  kind?: string;
  // Where it waits for a place: by default 'view' for a list (kind 'list'), else 'reviews'.
  lane?: LaneName;
}

export class KubeApi {
  private readonly lanes: Record<LaneName, Lane>;
  readonly server: string;
  // Requests made, by kind (list, watch, tokenreview, ...), for the metrics: what the aggregator
  // costs the API server. A request refused or timed out before it was sent is not counted.
  readonly requests = new Map<string, number>();

  constructor(readonly config: KubeConfig) {
    this.server = config.getCurrentCluster()?.server ?? '';
    this.lanes = { reviews: new Lane('reviews', LANES.reviews), view: new Lane('view', LANES.view), writes: new Lane('writes', LANES.writes) };
  }

  counted(kind: string): void {
    this.requests.set(kind, (this.requests.get(kind) ?? 0) + 1);
  }

  /**
   * A request with the configured identity; the body, when any, is JSON. Never throws on a
   * status; throws KubeApiBusyError at once when its lane's line is full, and KubeApiTimeoutError
   * when no answer came within its deadline (waiting included).
   */
  async request<T = unknown>(method: Method, apiPath: string, body?: unknown, options: RequestOptions = {}): Promise<ApiAnswer<T>> {
    const kind = options.kind ?? (method === 'POST' ? apiPath.split('/').pop()!.replace(/s$/, '') : method.toLowerCase());
    const laneName = options.lane ?? (kind === 'list' ? 'view' : 'reviews');
    const lane = this.lanes[laneName];
    const timeoutMs = options.timeoutMs ?? 30_000;
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
    const called = performance.now();
    const failure = (err: unknown, waitedMs: number) => (deadline.aborted && !options.signal?.aborted ? new KubeApiTimeoutError(method, apiPath, timeoutMs, waitedMs, laneName) : err);
    try {
      await lane.enter(signal);
    } catch (err) {
      throw failure(err, performance.now() - called);
    }
    const waitedMs = performance.now() - called;
    try {
      this.counted(kind);
      const res = await this.send(method, apiPath, {
        accept: options.accept ?? 'application/json',
        ...(body === undefined ? {} : { 'content-type': options.contentType ?? 'application/json', body: JSON.stringify(body) }),
        signal,
      });
      return await answerOf<T>(res);
    } catch (err) {
      throw failure(err, waitedMs);
    } finally {
      lane.leave();
    }
  }

  /**
   * A watch (the path has watch=true), answered as it streams: outside every lane, since it holds
   * its connection for minutes and must never wait behind reviews. The caller reads the body and
   * ends it with `signal`; no inactivity limit applies (an idle watch may be silent for minutes).
   */
  async watch(apiPath: string, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    this.counted('watch');
    return this.send('GET', apiPath, { accept: 'application/json', signal, bodyTimeout: 0 });
  }

  /** One request with the configured identity (a rotated token is read again each time). */
  private async send(method: Method, apiPath: string, options: { accept: string; 'content-type'?: string; body?: string; signal: AbortSignal; bodyTimeout?: number }): Promise<Dispatcher.ResponseData> {
    const context = new RequestContext(`${this.server}${apiPath}`, HttpMethod[method]);
    await this.config.applySecurityAuthentication(context);
    const { accept, 'content-type': contentType, body, signal, bodyTimeout } = options;
    return request(context.getUrl(), {
      method,
      dispatcher: context.getDispatcher(),
      headers: { ...context.getHeaders(), accept, ...(contentType ? { 'content-type': contentType } : {}) },
      body,
      signal,
      ...(bodyTimeout === undefined ? {} : { bodyTimeout }),
    });
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
