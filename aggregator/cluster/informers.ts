// Informers that keep only what is used. client-node's ListWatch lists, watches, re-lists after
// 410 Gone, reconnects when a watch ends, and moves its resourceVersion on every event, BOOKMARK
// included; it keeps whatever objects it is given. The list is fetched here page by page and each
// object reduced (slim) before it is kept, and the watch is fed reduced objects too, so a Node's
// image list or a Pod's spec never stays in memory: 5,000 Nodes cost a few hundred bytes each
// instead of several KiB.
//
// The watch request is made here rather than by client-node's Watch, which asks for no bookmarks
// and no timeoutSeconds and drops any watch silent for 30 s: an idle watch was reopened twice a
// minute with the version of the original list, which in a busy cluster ages out of the watch
// cache (410, then a full list again). Here each watch asks for bookmarks (the API server's watch
// cache sends one about every minute and just before the timeout, carrying its newest version:
// k8s.io/apiserver pkg/storage/cacher/cache_watcher.go, nextBookmarkTime) and runs for minutes,
// ended by the server, as client-go's reflector does.
//
// ListWatch stops on an error it does not handle itself (refused, 403, 404): Supervised restarts
// it with a backoff from the version it had (no list while that version is valid), says so once
// per change of state, and counts it.
import { ListWatch, Watch, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { answerOf } from '../answer.js';
import { KubeApiError, type KubeApi } from './api.js';

// The fields ListWatch itself reads: metadata.name, namespace and resourceVersion.
export type Slim<T> = T & { metadata: { name: string; namespace?: string; resourceVersion?: string } };

export interface WatchTiming {
  // Each watch asks the server to end it after a random time between this and twice this, so
  // that watches started together do not all come back together: client-go's reflector does the
  // same with 5 minutes (k8s.io/client-go tools/cache/reflector.go: defaultMinWatchTimeout, and
  // timeoutSeconds = minWatchTimeout * (rand.Float64() + 1.0) in watch()).
  minWatchSeconds: number;
  // No answer (headers) within this: the watch is given up and asked again.
  connectTimeoutMs: number;
  // Still open this long after the server should have ended it: the connection is taken for dead
  // (a hung server, a connection lost without a word) and the watch is asked again.
  overdueMs: number;
}

export const WATCH_TIMING: WatchTiming = { minWatchSeconds: 300, connectTimeoutMs: 30_000, overdueMs: 30_000 };

/** What makes ListWatch ask for the watch again at once, from the version it has. */
const retryAtOnce = (message: string) => Object.assign(new Error(message), { name: 'TimeoutError' });

interface WatchEvent {
  type: string;
  object: unknown;
}

/**
 * The watch requests of one informer, for ListWatch: reduced objects in the events, bookmarks
 * asked for, a timeout of minutes; `watching` is called once the server has accepted a watch.
 */
class SlimWatch<T> extends Watch {
  constructor(
    private readonly api: KubeApi,
    private readonly slim: (raw: never) => Slim<T>,
    private readonly timing: WatchTiming,
    private readonly watching: () => void,
  ) {
    super(api.config);
  }

  override async watch(path: string, query: Record<string, string | number | boolean | undefined>, callback: (phase: string, object: unknown, watchObject?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    const controller = new AbortController();
    const timeoutSeconds = Math.floor(this.timing.minWatchSeconds * (1 + Math.random()));
    const params = new URLSearchParams({ watch: 'true', allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds) });
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    let finished = false;
    // Once, and after watch() has returned its controller: ListWatch keeps the controller it
    // gets, and done() starts the next watch.
    const finish = (err: unknown) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      controller.abort();
      setImmediate(() => done(err));
    };
    // No answer at all is an error (the informer backs off); an answer that outstays its
    // timeout is a lost connection (asked again at once, from the version it had).
    let timer = setTimeout(() => finish(new Error(`watch ${path}: no answer within ${this.timing.connectTimeoutMs / 1000} s`)), this.timing.connectTimeoutMs).unref();
    try {
      const res = await this.api.watch(`${path}?${params}`, controller.signal);
      if (res.statusCode !== 200) {
        const answer = await answerOf<{ message?: string }>(res);
        throw new KubeApiError(res.statusCode, `watch ${path}: ${res.statusCode} ${typeof answer.body === 'object' ? answer.body?.message : String(answer.body).slice(0, 200)}`);
      }
      clearTimeout(timer);
      timer = setTimeout(() => finish(retryAtOnce(`watch ${path}: not ended by the server ${this.timing.overdueMs} ms after its ${timeoutSeconds} s`)), timeoutSeconds * 1000 + this.timing.overdueMs).unref();
      this.watching();
      let carry = '';
      res.body.setEncoding('utf8');
      res.body.on('data', (chunk: string) => {
        const lines = (carry + chunk).split('\n');
        carry = lines.pop() ?? '';
        for (const line of lines) {
          if (finished || line === '') continue;
          let event: WatchEvent;
          try {
            event = JSON.parse(line) as WatchEvent;
          } catch {
            // A lost event would leave the cache wrong until the next list: start again instead.
            finish(new Error(`watch ${path}: a line that is not JSON`));
            return;
          }
          const reduce = event.type === 'ADDED' || event.type === 'MODIFIED' || event.type === 'DELETED';
          callback(event.type, reduce ? this.slim(event.object as never) : event.object, event);
        }
      });
      res.body.on('end', () => finish(null));
      res.body.on('error', finish);
      res.body.on('close', () => finish(null));
    } catch (err) {
      finish(err);
    }
    return controller;
  }
}

const PAGE = 500;

const objectKey = (o: { metadata: { name: string; namespace?: string } }) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/** The kept fields, resourceVersion aside, as a string to compare. */
function factsOf(o: { metadata: { resourceVersion?: string } }): string {
  const { metadata, ...facts } = o;
  return JSON.stringify([metadata, facts], (key, value: unknown) => (key === 'resourceVersion' ? undefined : value));
}

export interface InformerSpec<T> {
  // For logs and metrics: "nodes", "felixconfigurations", ...
  name: string;
  // The collection's path, e.g. /api/v1/nodes or /apis/apps/v1/namespaces/x/deployments.
  path: string;
  slim: (raw: never) => Slim<T>;
  labelSelector?: string;
  fieldSelector?: string;
}

export type InformerState = 'starting' | 'synced' | 'forbidden' | 'not served' | 'unreachable';

export interface SupervisedOptions {
  log: Logger;
  onChange: () => void;
  onState?: (name: string, state: InformerState, reason?: string) => void;
  // Backoff bounds for restarts after an error, ms.
  minDelayMs?: number;
  maxDelayMs?: number;
  // How long watches run (WATCH_TIMING unless set): tests ask for seconds.
  watch?: Partial<WatchTiming>;
}

/** One slim informer, restarted after errors, with its state. */
export class Supervised<T> {
  readonly cache: ListWatch<Slim<T> & KubernetesObject>;
  state: InformerState = 'starting';
  // Whether a list completed once: the cache then reflects the cluster (possibly stale).
  everSynced = false;
  private delayMs: number;
  private timer: NodeJS.Timeout | undefined;
  // Refusals (401, 403) in a row.
  private refusals = 0;
  private stopped = false;
  // What each object's kept fields were, to tell a change from a touch.
  private readonly seen = new Map<string, string>();

  constructor(
    private readonly api: KubeApi,
    readonly spec: InformerSpec<T>,
    private readonly options: SupervisedOptions,
  ) {
    this.delayMs = options.minDelayMs ?? 1_000;
    const listFn = async () => {
      // ListWatch lists again only when it has no version: the server said the one it had expired.
      if (this.everSynced) options.log.info({ resource: spec.name }, 'cluster view: the watch\'s version expired; listing again');
      const list = await this.list();
      this.everSynced = true;
      this.recovered();
      // An empty list adds nothing, and the view still became whole: say so.
      queueMicrotask(() => this.options.onChange());
      return list;
    };
    const watch = new SlimWatch(api, spec.slim, { ...WATCH_TIMING, ...options.watch }, () => {
      if (this.everSynced) this.recovered();
    });
    this.cache = new ListWatch(spec.path, watch, listFn as never, false, spec.labelSelector, spec.fieldSelector);
    // Only a change of what is kept is a change: a Node's status heartbeat touches none of it.
    this.cache.on('add', (object) => {
      this.seen.set(objectKey(object), factsOf(object));
      options.onChange();
    });
    this.cache.on('update', (object) => {
      const key = objectKey(object);
      const facts = factsOf(object);
      if (this.seen.get(key) === facts) return;
      this.seen.set(key, facts);
      options.onChange();
    });
    this.cache.on('delete', (object) => {
      this.seen.delete(objectKey(object));
      options.onChange();
    });
    this.cache.on('error', (err: unknown) => this.failed(err));
  }

  start(): void {
    this.stopped = false;
    void this.cache.start().catch((err: unknown) => this.failed(err));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.cache.stop();
  }

  /** A list or a watch went through: the cache follows the cluster again. */
  private recovered(): void {
    this.setState('synced');
    this.delayMs = this.options.minDelayMs ?? 1_000;
    this.refusals = 0;
  }

  /** Every page of the list, reduced; the resourceVersion is the list's. */
  private async list(): Promise<{ metadata: { resourceVersion: string }; items: Slim<T>[] }> {
    const items: Slim<T>[] = [];
    let resourceVersion: string;
    let next: string | undefined;
    do {
      const query = new URLSearchParams({ limit: String(PAGE) });
      if (this.spec.labelSelector) query.set('labelSelector', this.spec.labelSelector);
      if (this.spec.fieldSelector) query.set('fieldSelector', this.spec.fieldSelector);
      if (next) query.set('continue', next);
      const page = await this.api.call<{ metadata: { resourceVersion: string; continue?: string }; items: never[] }>('GET', `${this.spec.path}?${query}`, undefined, { kind: 'list', lane: 'view' });
      for (const raw of page.items) items.push(this.spec.slim(raw));
      resourceVersion = page.metadata.resourceVersion;
      next = page.metadata.continue || undefined;
    } while (next);
    return { metadata: { resourceVersion }, items };
  }

  private failed(err: unknown): void {
    if (this.stopped) return;
    const status = err instanceof KubeApiError ? err.statusCode : (err as { statusCode?: number }).statusCode;
    const state: InformerState = status === 403 || status === 401 ? 'forbidden' : status === 404 ? 'not served' : 'unreachable';
    // A restarted API server refuses requests for a moment, until its authorizer has read the
    // RBAC objects (the restart in test/aggregator/cluster-view.test.ts met it): a refusal is
    // asked again once, soon, before it is said.
    this.refusals = state === 'forbidden' ? this.refusals + 1 : 0;
    const quiet = this.refusals === 1;
    if (!quiet) this.setState(state, (err as Error).message);
    // A resource that is not served (a CRD not installed) may appear later; look again slowly.
    const delay = state === 'not served' ? 60_000 : quiet ? (this.options.minDelayMs ?? 1_000) : this.delayMs;
    if (!quiet) this.delayMs = Math.min(this.delayMs * 2, this.options.maxDelayMs ?? 30_000);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), delay);
    this.timer.unref();
  }

  private setState(state: InformerState, reason?: string): void {
    if (state === this.state) return;
    const was = this.state;
    this.state = state;
    this.options.onState?.(this.spec.name, state, reason);
    const fields = { resource: this.spec.name, state, was, ...(reason ? { reason } : {}) };
    if (state === 'synced') this.options.log.info(fields, was === 'starting' ? 'cluster view: watching' : 'cluster view: watch restored');
    else if (state === 'not served') this.options.log.info(fields, 'cluster view: resource not served by this cluster');
    else if (state === 'forbidden') this.options.log.error(fields, 'cluster view: watch forbidden; check the aggregator\'s RBAC');
    else this.options.log.warn(fields, 'cluster view: watch lost; retrying');
    // A not-served resource that never existed counts as listed (empty), so the view can be whole.
    if (state === 'not served') this.options.onChange();
  }
}
