// Refusals, logged so that an admin sees each cause and an attacker can neither flood the log nor
// switch it off. A cause is text the aggregator chose (a reason, a route's pattern, an identity
// the API server vouched for), never text from the request: a path, a report's node name or an
// authenticator's error message would let a caller make every refusal a new cause.
//
// Each cause is logged at most once per window (a minute); what is not logged is counted, and a
// line at the end of each window says how many refusals went unlogged and for which reasons. The
// causes remembered are bounded: past `maxCauses` in one window, a new cause is counted, not
// logged, until the window turns. Nothing stops for good.
import type { Logger } from 'pino';
import type { Refusal } from './policy.js';

export type RefusalKind = 'report' | 'read';

export interface RefusalLogOptions {
  windowMs?: number;
  maxCauses?: number;
  now?: () => number;
}

const MESSAGE: Record<RefusalKind, string> = { report: 'report refused', read: 'read refused' };

export class RefusalLog {
  private readonly windowMs: number;
  private readonly maxCauses: number;
  private readonly now: () => number;
  // When each cause was last logged. Map order is insertion order: oldest first.
  private readonly loggedAt = new Map<string, number>();
  // Refusals not logged since the last summary, by reason (a closed set: policy.ts RejectReason).
  private readonly unlogged = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    options: RefusalLogOptions = {},
  ) {
    this.windowMs = options.windowMs ?? 60_000;
    this.maxCauses = options.maxCauses ?? 1024;
    this.now = options.now ?? Date.now;
  }

  refused(kind: RefusalKind, refusal: Refusal, request: { ip: string; route: string }): void {
    const key = `${kind}\0${refusal.reason}\0${refusal.cause}`;
    const now = this.now();
    const last = this.loggedAt.get(key);
    if ((last !== undefined && now - last < this.windowMs) || (last === undefined && !this.room(now))) {
      this.unlogged.set(refusal.reason, (this.unlogged.get(refusal.reason) ?? 0) + 1);
      return;
    }
    this.loggedAt.delete(key);
    this.loggedAt.set(key, now);
    this.log.warn({ status: refusal.status, reason: refusal.reason, cause: refusal.cause, route: request.route, from: request.ip }, MESSAGE[kind]);
  }

  /** Whether a new cause may be remembered: forgets those whose window has passed to make room. */
  private room(now: number): boolean {
    if (this.loggedAt.size < this.maxCauses) return true;
    this.forget(now);
    return this.loggedAt.size < this.maxCauses;
  }

  private forget(now: number): void {
    for (const [key, at] of this.loggedAt) {
      if (now - at < this.windowMs) break; // the rest were logged later
      this.loggedAt.delete(key);
    }
  }

  /** The window's end: one line counting the refusals not logged, if any, and old causes forgotten. */
  summarize(): void {
    this.forget(this.now());
    if (this.unlogged.size === 0) return;
    const reasons = Object.fromEntries(this.unlogged);
    const total = [...this.unlogged.values()].reduce((a, b) => a + b, 0);
    this.unlogged.clear();
    this.log.warn({ unlogged: total, reasons, windowSeconds: this.windowMs / 1000 }, 'refusals not logged (one line per cause per window)');
  }

  start(): void {
    this.timer ??= setInterval(() => this.summarize(), this.windowMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.summarize();
  }
}
