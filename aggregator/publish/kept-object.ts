// One object the aggregator keeps in the Kubernetes API (the report, the values ConfigMap), as
// controller-runtime's controllers keep theirs (style.md, round 3): server-side apply with a field
// manager of our own, written only when its content changes, at most one write per interval,
// retried after errors, and checked against the server now and then (someone deleted or edited
// it). The content is compared, never the time: nothing is written while nothing changes.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeApi } from '../cluster/api.js';

export const FIELD_MANAGER = 'nodeprep';

export interface KeptObjectTiming {
  // At most one write per this many ms (coalescing: what changes meanwhile goes in the next one).
  minIntervalMs: number;
  // How often the content is worked out again, for changes that come without a transition.
  checkIntervalMs: number;
  // How often the object is read back from the server (deleted? edited by someone else?).
  resyncMs: number;
  // After a transition, wait this long for the ones that come with it.
  debounceMs: number;
}

export interface KeptObjectOptions {
  // For logs and request counts: "report", "values ConfigMap".
  name: string;
  kind: string;
  api: KubeApi;
  log: Logger;
  timing: KeptObjectTiming;
  // The object's path and content now; undefined: nothing to write yet.
  target: () => { path: string; object: object } | undefined;
  // Whether an apply may create the object (the report), or the chart must have (the ConfigMap:
  // RBAC cannot grant create on one name only).
  mayCreate: boolean;
  onApplied?: (bytes: number) => void;
  onFailed?: () => void;
  // The server said 404 (the object, or for a custom resource its kind, is gone).
  onNotFound?: () => void;
  now?: () => number;
}

/** JSON with the keys of every object sorted, so that two equal objects give the same text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

/**
 * The server's object cut to the fields we set: the server adds its own (uid, managedFields,
 * resourceVersion, other managers' labels), and those are not a difference.
 */
export function projectOnto(server: unknown, ours: unknown): unknown {
  if (Array.isArray(ours)) {
    if (!Array.isArray(server)) return server;
    return server.map((item, i) => (i < ours.length ? projectOnto(item, ours[i]) : item));
  }
  if (ours && typeof ours === 'object') {
    if (!server || typeof server !== 'object' || Array.isArray(server)) return server;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(ours)) if (key in server) out[key] = projectOnto((server as Record<string, unknown>)[key], (ours as Record<string, unknown>)[key]);
    return out;
  }
  return server;
}

const digestOf = (text: string) => createHash('sha256').update(text).digest('hex');

export class KeptObject {
  private applied: { digest: string; path: string; resourceVersion?: string } | undefined;
  private lastWriteAt = -Infinity;
  private nextResyncAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private failing: string | undefined;
  private readonly now: () => number;

  constructor(private readonly options: KeptObjectOptions) {
    this.now = options.now ?? Date.now;
  }

  start(): void {
    this.stopped = false;
    this.ticker = setInterval(() => void this.check(), this.options.timing.checkIntervalMs);
    this.ticker.unref();
    this.poke();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.ticker);
    clearTimeout(this.timer);
    await this.running;
  }

  /** Something changed: look soon (after the debounce, and not before the next write is due). */
  poke(): void {
    if (this.stopped) return;
    const at = Math.max(this.now() + this.options.timing.debounceMs, this.lastWriteAt + this.options.timing.minIntervalMs);
    this.schedule(at);
  }

  /** Forget what is known of the server's copy: the next check reads it back. */
  forget(): void {
    this.applied = undefined;
    this.nextResyncAt = 0;
  }

  private schedule(at: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.check(), Math.max(0, at - this.now()));
    this.timer.unref();
  }

  /** Works the content out, and writes it if it differs from what the server has. One at a time. */
  check(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.once();
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async once(): Promise<void> {
    const target = this.options.target();
    if (!target || this.stopped) return;
    const text = canonicalJson(target.object);
    const digest = digestOf(text);
    const now = this.now();
    const known = this.applied !== undefined && this.applied.path === target.path;
    const resync = !known || now >= this.nextResyncAt;
    if (known && this.applied!.digest === digest && !resync) return;
    if (now < this.lastWriteAt + this.options.timing.minIntervalMs) {
      this.schedule(this.lastWriteAt + this.options.timing.minIntervalMs);
      return;
    }
    if (resync) {
      const server = await this.read(target.path);
      if (server === 'failed') return;
      this.nextResyncAt = now + this.options.timing.resyncMs;
      if (server === 'gone') {
        this.applied = undefined;
        if (!this.options.mayCreate) {
          this.options.onNotFound?.();
          return;
        }
      } else {
        const rv = server.metadata?.resourceVersion;
        if (known && rv !== undefined && rv === this.applied!.resourceVersion && this.applied!.digest === digest) return;
        if (digestOf(canonicalJson(projectOnto(server, target.object))) === digest) {
          // The server has it already (after our restart, say): nothing to write.
          this.applied = { digest, path: target.path, ...(rv ? { resourceVersion: rv } : {}) };
          return;
        }
      }
    }
    await this.apply(target.path, target.object, digest, Buffer.byteLength(text));
  }

  private async read(path: string): Promise<{ metadata?: { resourceVersion?: string } } | 'gone' | 'failed'> {
    try {
      const res = await this.options.api.request<{ metadata?: { resourceVersion?: string } }>('GET', path, undefined, { kind: `${this.options.kind}-get`, lane: 'writes' });
      if (res.status === 200) return res.body;
      if (res.status === 404) return 'gone';
      this.failed(`read: ${res.status} ${messageOf(res.body)}`);
    } catch (err) {
      this.failed(`read: ${(err as Error).message}`);
    }
    return 'failed';
  }

  private async apply(path: string, object: object, digest: string, bytes: number): Promise<void> {
    this.lastWriteAt = this.now();
    try {
      const res = await this.options.api.request<{ metadata?: { resourceVersion?: string } }>('PATCH', `${path}?fieldManager=${FIELD_MANAGER}&force=true`, object, {
        contentType: 'application/apply-patch+yaml',
        kind: `${this.options.kind}-apply`,
        lane: 'writes',
      });
      if (res.status >= 200 && res.status < 300) {
        const rv = res.body.metadata?.resourceVersion;
        this.applied = { digest, path, ...(rv ? { resourceVersion: rv } : {}) };
        this.nextResyncAt = this.now() + this.options.timing.resyncMs;
        this.options.onApplied?.(bytes);
        if (this.failing) this.options.log.info({ object: this.options.name }, `${this.options.name} written again`);
        this.failing = undefined;
        this.options.log.debug({ object: this.options.name, bytes }, `${this.options.name} written`);
        return;
      }
      this.options.onFailed?.();
      if (res.status === 404) {
        this.applied = undefined;
        this.options.onNotFound?.();
        return;
      }
      this.failed(`${res.status} ${messageOf(res.body)}`);
    } catch (err) {
      this.options.onFailed?.();
      this.failed((err as Error).message);
    }
  }

  /** Says so once per kind of failure; the next check (checkIntervalMs) tries again. */
  private failed(why: string): void {
    this.applied = undefined;
    const cause = why.replace(/\d+/g, '#');
    if (this.failing === cause) return;
    this.failing = cause;
    this.options.log.warn({ object: this.options.name, err: why, retryInSeconds: this.options.timing.checkIntervalMs / 1000 }, `${this.options.name} not written; retrying`);
  }
}

export function messageOf(body: unknown): string {
  if (body && typeof body === 'object' && 'message' in body) return String((body as { message: unknown }).message).slice(0, 300);
  return String(body).slice(0, 300);
}
