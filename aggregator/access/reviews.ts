// Asking the Kubernetes API who a bearer token is (TokenReview) and what it may do
// (SubjectAccessReview), as kube-rbac-proxy does; and on which node a pod runs. Answers are cached
// (bounded, never past the token's expiry) so that a 5,000-node cluster's heartbeats cost one
// TokenReview per token per cache lifetime, and concurrent requests with one token share one
// review. Failures to ask are not cached: the next request asks again.
//
// A token in use is reviewed again before its answer expires (in the last quarter of the cache
// lifetime), in the background, while requests go on with the answer they have: an agent's
// report never waits for a TokenReview but its first. The new answer replaces the old one,
// whatever it says (a deleted pod's token is refused from then on).
import { createHash } from 'node:crypto';
import type { KubeApi } from '../cluster/api.js';
import { jwtExpiry } from './bearer.js';

export type TokenIdentity =
  | { authenticated: true; username: string; uid?: string; groups: string[]; extra: Record<string, string[]> }
  | { authenticated: false; error: string };

export interface ReviewCounters {
  // A review asked of the API server ('tokenreview', 'subjectaccessreview', 'pod'), or answered from the cache.
  asked: (kind: string) => void;
  cached: (kind: string) => void;
}

// A rejected token is asked about again after this long: a flood of bad tokens must not become
// a flood of TokenReviews, and a token that just became valid must not wait minutes.
const NEGATIVE_TTL_MS = 10_000;
const MAX_ENTRIES = 50_000;

// A cached answer is asked again in the background after this share of its lifetime.
const REFRESH_AFTER = 0.75;

interface CacheEntry<V> {
  value: V;
  expiresAt: number;
  refreshAt: number; // Infinity: not worth asking again before it expires
}

/** A bounded map whose entries expire; the oldest entry goes first when full. */
class ExpiringCache<V> {
  private readonly entries = new Map<string, CacheEntry<V>>();
  private readonly pending = new Map<string, Promise<V>>();

  constructor(private readonly max = MAX_ENTRIES) {}

  get(key: string, now: number): V | undefined {
    return this.entry(key, now)?.value;
  }

  entry(key: string, now: number): CacheEntry<V> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt > now) return entry;
    this.entries.delete(key);
    return undefined;
  }

  set(key: string, value: V, expiresAt: number, refreshAt = Infinity): void {
    this.entries.delete(key);
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { value, expiresAt, refreshAt });
  }

  /** One lookup in flight per key. */
  once(key: string, work: () => Promise<V>): Promise<V> {
    const running = this.pending.get(key);
    if (running) return running;
    const started = work().finally(() => this.pending.delete(key));
    this.pending.set(key, started);
    return started;
  }

  get size(): number {
    return this.entries.size;
  }
}

const digest = (text: string) => createHash('sha256').update(text).digest('base64');

export class Reviews {
  private readonly tokens = new ExpiringCache<TokenIdentity>();
  private readonly access = new ExpiringCache<boolean>();
  private readonly pods = new ExpiringCache<string | undefined>();

  constructor(
    private readonly api: KubeApi,
    private readonly cacheMs: number,
    private readonly counters: ReviewCounters,
    private readonly now: () => number = Date.now,
  ) {}

  /** Who the token is, for these audiences (none: the API server's own). */
  async tokenReview(token: string, audiences: string[]): Promise<TokenIdentity> {
    const key = `${audiences.join(',')}\0${digest(token)}`;
    const now = this.now();
    const cached = this.tokens.entry(key, now);
    if (cached) {
      this.counters.cached('tokenreview');
      // Failures to ask again are not cached, and the answer held is good until it expires.
      if (now >= cached.refreshAt) this.askTokenReview(key, token, audiences).catch(() => undefined);
      return cached.value;
    }
    return this.askTokenReview(key, token, audiences);
  }

  private askTokenReview(key: string, token: string, audiences: string[]): Promise<TokenIdentity> {
    return this.tokens.once(key, async () => {
      this.counters.asked('tokenreview');
      // The answer holds from when it was asked.
      const now = this.now();
      const review = await this.api.call<{ status?: { authenticated?: boolean; user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> }; error?: string } }>(
        'POST',
        '/apis/authentication.k8s.io/v1/tokenreviews',
        { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(audiences.length > 0 ? { audiences } : {}) } },
        { timeoutMs: 10_000 },
      );
      const status = review.status ?? {};
      let identity: TokenIdentity;
      let expiresAt: number;
      let refreshAt = Infinity;
      if (status.authenticated && status.user?.username) {
        identity = { authenticated: true, username: status.user.username, ...(status.user.uid ? { uid: status.user.uid } : {}), groups: status.user.groups ?? [], extra: status.user.extra ?? {} };
        expiresAt = Math.min(now + this.cacheMs, jwtExpiry(token) ?? Infinity);
        // Not past the token's own expiry: asking again then would only hear that it expired.
        if (now + this.cacheMs * REFRESH_AFTER < expiresAt) refreshAt = now + this.cacheMs * REFRESH_AFTER;
      } else {
        identity = { authenticated: false, error: status.error ?? 'not authenticated' };
        expiresAt = now + Math.min(NEGATIVE_TTL_MS, this.cacheMs);
      }
      this.tokens.set(key, identity, expiresAt, refreshAt);
      return identity;
    });
  }

  /** Whether the identity may GET this non-resource path (RBAC nonResourceURLs). */
  async mayGet(identity: Extract<TokenIdentity, { authenticated: true }>, path: string): Promise<boolean> {
    const key = `${identity.username}\0${identity.groups.join(',')}\0${path}`;
    const cached = this.access.get(key, this.now());
    if (cached !== undefined) {
      this.counters.cached('subjectaccessreview');
      return cached;
    }
    return this.access.once(key, async () => {
      this.counters.asked('subjectaccessreview');
      const review = await this.api.call<{ status?: { allowed?: boolean } }>(
        'POST',
        '/apis/authorization.k8s.io/v1/subjectaccessreviews',
        {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: { user: identity.username, ...(identity.uid ? { uid: identity.uid } : {}), groups: identity.groups, extra: identity.extra, nonResourceAttributes: { path, verb: 'get' } },
        },
        { timeoutMs: 10_000 },
      );
      const allowed = review.status?.allowed === true;
      this.access.set(key, allowed, this.now() + (allowed ? this.cacheMs : Math.min(NEGATIVE_TTL_MS, this.cacheMs)));
      return allowed;
    });
  }

  /** The node a pod runs on (spec.nodeName), for tokens that name their pod but not its node. */
  async podNode(namespace: string, pod: string, podUid: string | undefined): Promise<string | undefined> {
    const key = `${namespace}/${pod}/${podUid ?? ''}`;
    const cached = this.pods.get(key, this.now());
    if (cached !== undefined) {
      this.counters.cached('pod');
      return cached;
    }
    return this.pods.once(key, async () => {
      this.counters.asked('pod');
      const res = await this.api.request<{ metadata?: { uid?: string }; spec?: { nodeName?: string } }>('GET', `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}`, undefined, { timeoutMs: 10_000 });
      // A pod of that name but another uid is another pod: the token's pod is gone.
      const node = res.status === 200 && (podUid === undefined || res.body.metadata?.uid === podUid) ? res.body.spec?.nodeName : undefined;
      if (res.status !== 200 && res.status !== 404) throw new Error(`GET pod ${namespace}/${pod}: ${res.status}`);
      // A pod never moves to another node: its answer holds as long as the token does.
      this.pods.set(key, node, this.now() + (node ? this.cacheMs : NEGATIVE_TTL_MS));
      return node;
    });
  }
}
