// Where findings go (design.md section 10; node-problem-detector's exporters): findings change in
// one place, the engine's transitions, and every outlet is fed from there. An outlet is one file
// of this folder and one line in outlets.ts. Outlets that keep an object up to date (the report,
// the values ConfigMap) also look again on their own schedule, for what changes without a
// transition (node counts, the sizing) and for what others did to their object.
import type { Logger } from 'pino';
import type { Transition } from '../findings/book.js';

export interface Outlet {
  readonly name: string;
  /** A finding was raised or resolved. Called in order, synchronously: queue, never wait. */
  transition?(transition: Transition): void;
  /** The aggregator is ready (onReady): start timers. */
  start?(): void;
  /** The aggregator closes: stop timers, let what is in flight finish. */
  stop?(): Promise<void> | void;
}

/** The outlets as one: each transition to each outlet; one outlet's failure is not another's. */
export class Outlets {
  private readonly list: Outlet[] = [];
  private readonly failed = new Set<string>();

  constructor(private readonly log: Logger) {}

  add(...outlets: Outlet[]): void {
    this.list.push(...outlets);
  }

  get names(): string[] {
    return this.list.map((o) => o.name);
  }

  transition(transition: Transition): void {
    for (const outlet of this.list) {
      try {
        outlet.transition?.(transition);
      } catch (err) {
        // Once per outlet: a broken outlet must not turn every transition into a log line.
        if (this.failed.has(outlet.name)) continue;
        this.failed.add(outlet.name);
        this.log.error({ outlet: outlet.name, err: (err as Error).message }, 'outlet failed on a transition');
      }
    }
  }

  start(): void {
    for (const outlet of this.list) outlet.start?.();
  }

  async stop(): Promise<void> {
    await Promise.all(this.list.map(async (o) => o.stop?.()));
  }
}
