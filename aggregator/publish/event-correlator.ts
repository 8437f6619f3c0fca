// How many Events the aggregator may write, and which ones repeat an earlier one: client-go's
// event recorder's rules (k8s.io/client-go/tools/record/events_cache.go), without I/O.
//
// - Per object, EventSourceObjectSpamFilter's token bucket: a burst of 25, then one every 5
//   minutes (defaultSpamBurst, defaultSpamQPS = 1/300), kept for the 4,096 most recent objects
//   (maxLruCacheEntries).
// - Over all objects, a bucket of our own: client-go bounds a recorder only by its queue (1,000
//   events, dropped when full), and a controller that sees 5,000 new Nodes at once would write
//   5,000 Events at once. A burst of 100 and then one every 5 s keeps that to a trickle; the report
//   object and GET /v1/findings still have every finding.
// - A repeat is counted in its series rather than written anew (the EventLogger's count and
//   PATCH): an Event's name is fixed by its object, reason and finding (node-events.ts), so the
//   series is the Event of that name, whatever this process remembers.
// What is dropped is dropped, as in client-go: Events are hints, not the record.

export interface CorrelatorOptions {
  objectBurst: number;
  objectRefillMs: number;
  burst: number;
  refillMs: number;
  cacheSize: number;
}

export const DEFAULT_CORRELATOR: CorrelatorOptions = { objectBurst: 25, objectRefillMs: 300_000, burst: 100, refillMs: 5_000, cacheSize: 4096 };

/** A token bucket that refills continuously, like client-go's flowcontrol token bucket. */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly burst: number,
    private readonly refillMs: number,
    now: number,
  ) {
    this.tokens = burst;
    this.at = now;
  }

  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + Math.max(0, now - this.at) / this.refillMs);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** A Map that forgets its least recently used entries past a size (k8s.io/utils/lru). */
export class Lru<K, V> {
  private readonly map = new Map<K, V>();

  constructor(private readonly size: number) {}

  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.size) this.map.delete(this.map.keys().next().value as K);
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  get length(): number {
    return this.map.size;
  }
}

export type DropReason = 'rate_limited' | 'burst';

export interface SeriesState {
  count: number;
  firstTimestamp: string;
}

export class EventCorrelator {
  private readonly objects: Lru<string, TokenBucket>;
  private readonly all: TokenBucket;
  private readonly series: Lru<string, SeriesState>;

  constructor(
    private readonly options: CorrelatorOptions = DEFAULT_CORRELATOR,
    now = 0,
  ) {
    this.objects = new Lru(options.cacheSize);
    this.series = new Lru(options.cacheSize);
    this.all = new TokenBucket(options.burst, options.refillMs, now);
  }

  /**
   * May an Event about this object be written now? The object's bucket first (a noisy object
   * spends only its own tokens), then everyone's. undefined: yes; otherwise why not.
   */
  admit(objectKey: string, now: number): DropReason | undefined {
    let bucket = this.objects.get(objectKey);
    if (!bucket) {
      bucket = new TokenBucket(this.options.objectBurst, this.options.objectRefillMs, now);
      this.objects.set(objectKey, bucket);
    }
    if (!bucket.take(now)) return 'rate_limited';
    if (!this.all.take(now)) return 'burst';
    return undefined;
  }

  /** What this process knows of the Event of this name: its count and first time, if it wrote it. */
  seriesOf(name: string): SeriesState | undefined {
    return this.series.get(name);
  }

  forget(name: string): void {
    this.series.delete(name);
  }

  /** The server's state of an Event after a write. */
  recorded(name: string, state: SeriesState): void {
    this.series.set(name, state);
  }
}
