// Informers that keep only what is used. client-node's ListWatch lists, watches, re-lists after
// 410 Gone and reconnects after a timeout; it keeps whatever objects it is given. The list is
// fetched here page by page and each object reduced (slim) before it is kept, and the watch is
// fed reduced objects too, so a Node's image list or a Pod's spec never stays in memory: 5,000
// Nodes cost a few hundred bytes each instead of several KiB.
//
// ListWatch stops on an error it does not handle itself (refused, 403, 404): Supervised restarts
// it with a backoff, says so once per change of state, and counts it.
import { ListWatch, Watch, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { KubeApiError, type KubeApi } from './api.js';

// The fields ListWatch itself reads: metadata.name, namespace and resourceVersion.
export type Slim<T> = T & { metadata: { name: string; namespace?: string; resourceVersion?: string } };

/** A Watch whose events carry the reduced object, and not the raw one. */
class SlimWatch<T> extends Watch {
  constructor(
    private readonly api: KubeApi,
    private readonly slim: (raw: never) => Slim<T>,
  ) {
    super(api.config);
  }

  override watch(path: string, query: Record<string, string | number | boolean | undefined>, callback: (phase: string, object: unknown, watchObject?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    this.api.counted('watch');
    return super.watch(path, query, (phase, object) => {
      const reduce = phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED';
      callback(phase, reduce ? this.slim(object as never) : object);
    }, done);
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
}

/** One slim informer, restarted after errors, with its state. */
export class Supervised<T> {
  readonly cache: ListWatch<Slim<T> & KubernetesObject>;
  state: InformerState = 'starting';
  // Whether a list completed once: the cache then reflects the cluster (possibly stale).
  everSynced = false;
  private delayMs: number;
  private timer: NodeJS.Timeout | undefined;
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
      const list = await this.list();
      this.everSynced = true;
      this.setState('synced');
      this.delayMs = this.options.minDelayMs ?? 1_000;
      // An empty list adds nothing, and the view still became whole: say so.
      queueMicrotask(() => this.options.onChange());
      return list;
    };
    this.cache = new ListWatch(spec.path, new SlimWatch(api, spec.slim), listFn as never, false, spec.labelSelector, spec.fieldSelector);
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
    this.cache.on('connect', () => {
      if (this.everSynced && this.state !== 'synced') this.setState('synced');
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
    this.setState(state, (err as Error).message);
    // A resource that is not served (a CRD not installed) may appear later; look again slowly.
    const delay = state === 'not served' ? 60_000 : this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.options.maxDelayMs ?? 30_000);
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
