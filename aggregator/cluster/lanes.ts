// Lanes for the requests to the API server: each lane has its own places and its own line, so
// that one kind of work can never hold up another. The agents' TokenReviews after an aggregator
// restart (thousands at once) fill the reviews lane; the cluster view's lists go on in theirs,
// and the watches use connections of their own (informers.ts), outside every lane.
//
// A line is bounded: when it is full a request is refused at once (KubeApiBusyError), which the
// access layer answers with 503 and Retry-After, rather than waiting behind a queue it cannot
// get through in time. A request waits only until its deadline; the deadline counts the wait.

/** Refused at once: its lane has no place and its line is full. */
export class KubeApiBusyError extends Error {
  override name = 'KubeApiBusyError';
  constructor(
    readonly lane: string,
    readonly waiting: number,
  ) {
    super(`Kubernetes API client busy: ${waiting} requests already wait in the ${lane} lane; try again later`);
  }
}

export interface LaneLimits {
  // Requests of the lane at the API server at once.
  inFlight: number;
  // Requests of the lane waiting for a place; beyond that, KubeApiBusyError.
  waiting: number;
}

interface Waiter {
  admit: () => void;
}

export class Lane {
  private inFlight = 0;
  // In order of arrival (a Set keeps it, and lets a request that gives up leave the line in O(1)).
  private readonly line = new Set<Waiter>();

  constructor(
    readonly name: string,
    private readonly limits: LaneLimits,
  ) {}

  /**
   * A place in the lane: at once when one is free; else a place in line, given up when `signal`
   * fires first (the request's deadline); else, with the line full, KubeApiBusyError.
   */
  enter(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    if (this.inFlight < this.limits.inFlight) {
      this.inFlight++;
      return Promise.resolve();
    }
    if (this.line.size >= this.limits.waiting) return Promise.reject(new KubeApiBusyError(this.name, this.line.size));
    return new Promise((resolve, reject) => {
      const giveUp = () => {
        this.line.delete(waiter);
        reject(signal.reason as Error);
      };
      const waiter: Waiter = {
        admit: () => {
          signal.removeEventListener('abort', giveUp);
          resolve();
        },
      };
      this.line.add(waiter);
      signal.addEventListener('abort', giveUp, { once: true });
    });
  }

  /** The place goes to the first in line, as it is; or it becomes free. */
  leave(): void {
    const next = this.line.values().next();
    if (next.done) {
      this.inFlight--;
      return;
    }
    this.line.delete(next.value);
    next.value.admit();
  }

  get waiting(): number {
    return this.line.size;
  }

  get busy(): number {
    return this.inFlight;
  }
}
