// The cache of the API server's answers (reviews.ts): bounded, each answer until it expires, the
// least recently used evicted first. Acceptances and refusals are kept in two lanes bounded apart,
// so that a flood of unknown tokens (each refused, each a new key) evicts only other refusals:
// the answers the agents' heartbeats use every minute stay, and cost no review.

export interface CacheEntry<V> {
  value: V;
  expiresAt: number;
  refreshAt: number; // Infinity: not worth asking again before it expires
}

export type Lane = 'accepted' | 'refused';

export interface CacheBounds {
  accepted: number;
  refused: number;
}

export class ReviewCache<V> {
  // A Map iterates in insertion order: a use moves an entry to the end, so the first is the
  // least recently used.
  private readonly lanes: Record<Lane, Map<string, CacheEntry<V>>> = { accepted: new Map(), refused: new Map() };

  constructor(private readonly bounds: CacheBounds) {}

  /** The answer held for `key`, if it has not expired; a use, for the eviction order. */
  entry(key: string, now: number): CacheEntry<V> | undefined {
    for (const lane of Object.values(this.lanes)) {
      const entry = lane.get(key);
      if (!entry) continue;
      lane.delete(key);
      if (entry.expiresAt <= now) return undefined;
      lane.set(key, entry);
      return entry;
    }
    return undefined;
  }

  set(key: string, lane: Lane, value: V, expiresAt: number, refreshAt = Infinity): void {
    for (const held of Object.values(this.lanes)) held.delete(key);
    const entries = this.lanes[lane];
    if (entries.size >= this.bounds[lane]) entries.delete(entries.keys().next().value!);
    entries.set(key, { value, expiresAt, refreshAt });
  }

  size(lane: Lane): number {
    return this.lanes[lane].size;
  }
}
