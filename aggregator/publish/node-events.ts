// The Events outlet (design.md section 10): on raise a Warning Event regarding each Node a
// finding concerns (Normal for an info finding), on resolve a Normal "...Resolved" one; findings
// about no node regard the aggregator's Deployment. Rate-limited and counted in series as
// client-go's recorder does (event-correlator.ts), written one at a time from a bounded queue
// (client-go's: 1,000, dropped when full), retried while the API server is away (client-go: 12
// tries, 10 s apart, the first delay randomised).
import os from 'node:os';
import type { Logger } from 'pino';
import type { KubeApi } from '../cluster/api.js';
import type { PublishMetrics } from '../metrics.js';
import { DEFAULT_CORRELATOR, EventCorrelator, type CorrelatorOptions, type SeriesState } from './event-correlator.js';
import { eventsOf, newEvent, objectKey, type EventContext, type EventDraft, type InvolvedObject } from './event-object.js';
import { messageOf } from './kept-object.js';
import type { Outlet } from './outlet.js';
import type { Transition } from '../findings/book.js';

export interface EventTiming {
  queueLimit: number;
  maxTries: number;
  retryDelayMs: number;
}

export const DEFAULT_EVENT_TIMING: EventTiming = { queueLimit: 1000, maxTries: 12, retryDelayMs: 10_000 };

export interface NodeEventsOptions {
  api: KubeApi;
  log: Logger;
  metrics: PublishMetrics;
  homeCluster: string;
  nodeExists: (name: string) => boolean;
  // "<namespace>/<name>" of the aggregator's Deployment, for findings about no node.
  deployment?: { namespace: string; name: string };
  correlator?: Partial<CorrelatorOptions>;
  timing?: Partial<EventTiming>;
  // reportingInstance: the pod's name (its hostname).
  instance?: string;
  now?: () => number;
}

type Outcome = 'done' | 'retry' | 'rejected';

const stamp = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

export class NodeEvents implements Outlet {
  readonly name = 'events';
  private readonly correlator: EventCorrelator;
  private readonly timing: EventTiming;
  private readonly now: () => number;
  private readonly queue: EventDraft[] = [];
  private draining: Promise<void> | undefined;
  private stopped = false;
  private deployment: InvolvedObject | undefined;
  private readonly said = new Set<string>();
  private wake: (() => void) | undefined;

  constructor(private readonly options: NodeEventsOptions) {
    this.now = options.now ?? Date.now;
    this.timing = { ...DEFAULT_EVENT_TIMING, ...options.timing };
    this.correlator = new EventCorrelator({ ...DEFAULT_CORRELATOR, ...options.correlator }, this.now());
  }

  start(): void {
    void this.findDeployment();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.length = 0;
    this.wake?.();
    await this.draining;
  }

  /** The Deployment's uid, so that `kubectl describe deployment` finds its Events too. */
  private async findDeployment(): Promise<void> {
    const ref = this.options.deployment;
    if (!ref) return;
    this.deployment = { apiVersion: 'apps/v1', kind: 'Deployment', namespace: ref.namespace, name: ref.name };
    try {
      const res = await this.options.api.request<{ metadata?: { uid?: string } }>('GET', `/apis/apps/v1/namespaces/${ref.namespace}/deployments/${ref.name}`, undefined, { kind: 'get', lane: 'writes' });
      const uid = res.status === 200 ? res.body.metadata?.uid : undefined;
      if (uid) this.deployment = { ...this.deployment, uid };
    } catch {
      // Without the uid, `kubectl events --for deployment/<name>` still finds them.
    }
  }

  transition(transition: Transition): void {
    if (this.stopped) return;
    const context: EventContext = {
      homeCluster: this.options.homeCluster,
      nodeExists: this.options.nodeExists,
      ...(this.deployment ? { deployment: this.deployment } : {}),
    };
    const now = this.now();
    for (const draft of eventsOf(transition, context)) {
      const dropped = this.correlator.admit(objectKey(draft.involvedObject), now);
      if (dropped) {
        this.options.metrics.eventsDropped.inc({ reason: dropped });
        this.sayOnce(dropped, 'info', { reason: dropped }, 'Events dropped by the rate limit (counted in nodeprep_events_dropped_total)');
        continue;
      }
      if (this.queue.length >= this.timing.queueLimit) {
        this.options.metrics.eventsDropped.inc({ reason: 'queue_full' });
        this.sayOnce('queue_full', 'warn', { queueLimit: this.timing.queueLimit }, 'Events dropped: the queue is full (the API server is slow or away)');
        continue;
      }
      this.queue.push(draft);
    }
    this.kick();
  }

  /** One writer at a time; it goes on while there is something to write. */
  private kick(): void {
    if (this.draining || this.stopped || this.queue.length === 0) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (!this.stopped && this.queue.length > 0) {
      const draft = this.queue.shift()!;
      for (let tries = 1; ; tries++) {
        const outcome = await this.write(draft);
        if (outcome === 'done') break;
        if (outcome === 'rejected') {
          this.options.metrics.eventsDropped.inc({ reason: 'rejected' });
          break;
        }
        if (tries >= this.timing.maxTries || this.stopped) {
          this.options.metrics.eventsDropped.inc({ reason: 'failed' });
          break;
        }
        const delay = tries === 1 ? this.timing.retryDelayMs * Math.random() : this.timing.retryDelayMs;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          timer.unref();
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }

  /** Creates the Event, or counts it again in its series; 'retry' while the API server cannot answer. */
  private async write(draft: EventDraft): Promise<Outcome> {
    const collection = `/api/v1/namespaces/${draft.namespace}/events`;
    const at = this.now();
    try {
      const known = this.correlator.seriesOf(draft.name);
      if (known) {
        const patched = await this.count(collection, draft, known, at);
        // 404: expired (the API server keeps Events for an hour by default): a new series.
        if (patched !== 404) return patched;
        this.correlator.forget(draft.name);
      }
      const created = await this.options.api.request('POST', collection, newEvent(draft, stamp(at), this.options.instance ?? os.hostname()), { kind: 'event-create', lane: 'writes' });
      if (created.status === 201) {
        this.correlator.recorded(draft.name, { count: 1, firstTimestamp: stamp(at) });
        this.options.metrics.eventsWritten.inc({ action: 'create' });
        return 'done';
      }
      if (created.status !== 409) return this.failed(created.status, created.body);
      // It exists: an earlier process (or an earlier raise this one forgot) wrote it. Continue its series.
      const existing = await this.options.api.request<{ count?: number; firstTimestamp?: string }>('GET', `${collection}/${draft.name}`, undefined, { kind: 'event-get', lane: 'writes' });
      if (existing.status !== 200) return this.failed(existing.status, existing.body);
      const patched = await this.count(collection, draft, { count: existing.body.count ?? 1, firstTimestamp: existing.body.firstTimestamp ?? stamp(at) }, at);
      return patched === 404 ? 'retry' : patched;
    } catch (err) {
      this.sayOnce('unreachable', 'warn', { err: (err as Error).message }, 'Events not written yet: the API server cannot be reached; retrying');
      return 'retry';
    }
  }

  /** One more in the Event's series: count, last time and message, as client-go's recorder patches them. */
  private async count(collection: string, draft: EventDraft, known: SeriesState, at: number): Promise<Outcome | 404> {
    const count = known.count + 1;
    const patched = await this.options.api.request('PATCH', `${collection}/${draft.name}`, { count, lastTimestamp: stamp(at), message: draft.message }, {
      contentType: 'application/merge-patch+json',
      kind: 'event-patch',
      lane: 'writes',
    });
    if (patched.status === 404) return 404;
    if (patched.status !== 200) return this.failed(patched.status, patched.body);
    this.correlator.recorded(draft.name, { count, firstTimestamp: known.firstTimestamp });
    this.options.metrics.eventsWritten.inc({ action: 'patch' });
    return 'done';
  }

  private failed(status: number, body: unknown): Outcome {
    if (status === 429 || status >= 500) return 'retry';
    this.sayOnce(`status ${status}`, status === 403 ? 'error' : 'warn', { status, err: messageOf(body) }, status === 403 ? 'Events refused: check the aggregator\'s RBAC (create, get, patch on events)' : 'Event refused by the API server; dropped');
    return 'rejected';
  }

  /** One log line per cause for the life of the process: never one per Event. */
  private sayOnce(cause: string, level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string): void {
    if (this.said.has(cause)) return;
    this.said.add(cause);
    this.options.log[level](fields, msg);
  }
}
