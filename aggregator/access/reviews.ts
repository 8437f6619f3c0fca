// Asking the Kubernetes API who a bearer token is (TokenReview) and what it may do
// (SubjectAccessReview), as kube-rbac-proxy does; and on which node a pod runs. Answers are cached
// (review-cache.ts: bounded, least recently used out first, refusals apart from acceptances, never
// past the token's expiry) so that a 5,000-node cluster's heartbeats cost one TokenReview per
// token per cache lifetime, and concurrent requests with one token share one review. Failures to
// ask are not cached: the next request asks again.
//
// A token in use is reviewed again before its answer expires (in the last quarter of the cache
// lifetime), in the background, while requests go on with the answer they have: an agent's
// report never waits for a TokenReview but its first. The new answer replaces the old one,
// whatever it says (a deleted pod's token is refused from then on).
import { createHash } from 'node:crypto';
import type { KubeApi } from '../cluster/api.js';
import { jwtExpiry } from './bearer.js';
import { ReviewCache, type CacheBounds } from './review-cache.js';

export type TokenIdentity =
  | { authenticated: true; username: string; uid?: string; groups: string[]; extra: Record<string, string[]>; audiences: string[] }
  // `audiences` is set when the API server accepted the token but confirmed none of the audiences
  // asked for: what it did confirm (perhaps nothing).
  | { authenticated: false; error: string; audiences?: string[] };

export interface ReviewCounters {
  // A review asked of the API server ('tokenreview', 'subjectaccessreview', 'pod'), or answered from the cache.
  asked: (kind: string) => void;
  cached: (kind: string) => void;
}

export interface ReviewOptions {
  now?: () => number;
  // Answers held, per cache (tokens, access, pods) and lane.
  entries?: CacheBounds;
}

// A rejected token is asked about again after this long: a flood of bad tokens must not become
// a flood of TokenReviews, and a token that just became valid must not wait minutes.
const NEGATIVE_TTL_MS = 10_000;
// Room for every agent and reader of a large cluster, and for 10 s of refusals at the rate the
// API server can review.
const ENTRIES: CacheBounds = { accepted: 50_000, refused: 20_000 };

// A cached answer is asked again in the background after this share of its lifetime.
const REFRESH_AFTER = 0.75;

interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

/**
 * Who a TokenReview's answer says the token is. When audiences were asked for, the answer must
 * confirm one of them in status.audiences: the Kubernetes API reference asks clients to check,
 * since an authenticator that ignores audiences would otherwise pass a token minted for another
 * service (authentication.k8s.io/v1 TokenReviewStatus.audiences).
 */
export function identityOf(status: TokenReviewStatus, asked: string[]): TokenIdentity {
  if (!status.authenticated || !status.user?.username) return { authenticated: false, error: status.error ?? 'not authenticated' };
  const audiences = status.audiences ?? [];
  if (asked.length > 0 && !asked.some((a) => audiences.includes(a))) {
    const said = audiences.length === 0 ? 'none' : audiences.map((a) => `"${a}"`).join(', ');
    return { authenticated: false, error: `the API server accepted the token without confirming audience ${asked.map((a) => `"${a}"`).join(', ')} (status.audiences: ${said})`, audiences };
  }
  const { username, uid, groups, extra } = status.user;
  return { authenticated: true, username, ...(uid ? { uid } : {}), groups: groups ?? [], extra: extra ?? {}, audiences };
}

/**
 * The cache key of a SubjectAccessReview: everything the review sends, in an encoding where no two
 * different inputs meet (a JSON array of strings, extra sorted by key), then hashed to bound its
 * size. Groups "a,b" + "c" and "a" + "b,c" are two keys.
 */
export function accessKey(identity: Extract<TokenIdentity, { authenticated: true }>, path: string): string {
  const extra = Object.keys(identity.extra).sort().map((key) => [key, identity.extra[key]]);
  return digest(JSON.stringify([identity.username, identity.uid ?? null, identity.groups, extra, path]));
}

const digest = (text: string) => createHash('sha256').update(text).digest('base64');

export class Reviews {
  private readonly tokens: ReviewCache<TokenIdentity>;
  private readonly access: ReviewCache<boolean>;
  private readonly pods: ReviewCache<string | undefined>;
  // Reviews in flight, by kind and key: concurrent requests share one.
  private readonly pending = new Map<string, Promise<unknown>>();
  private readonly now: () => number;

  constructor(
    private readonly api: KubeApi,
    private readonly cacheMs: number,
    private readonly counters: ReviewCounters,
    options: ReviewOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    const entries = options.entries ?? ENTRIES;
    this.tokens = new ReviewCache(entries);
    this.access = new ReviewCache(entries);
    this.pods = new ReviewCache(entries);
  }

  /** One piece of work in flight per key. */
  private once<V>(key: string, work: () => Promise<V>): Promise<V> {
    const running = this.pending.get(key) as Promise<V> | undefined;
    if (running) return running;
    const started = work().finally(() => this.pending.delete(key));
    this.pending.set(key, started);
    return started;
  }

  /** Who the token is, for these audiences (none: the API server's own). */
  async tokenReview(token: string, audiences: string[]): Promise<TokenIdentity> {
    const key = `${JSON.stringify(audiences)}\0${digest(token)}`;
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
    return this.once(`tokenreview\0${key}`, async () => {
      this.counters.asked('tokenreview');
      // The answer holds from when it was asked.
      const now = this.now();
      const review = await this.api.call<{ status?: TokenReviewStatus }>(
        'POST',
        '/apis/authentication.k8s.io/v1/tokenreviews',
        { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(audiences.length > 0 ? { audiences } : {}) } },
        { timeoutMs: 10_000 },
      );
      const identity = identityOf(review.status ?? {}, audiences);
      if (identity.authenticated) {
        const expiresAt = Math.min(now + this.cacheMs, jwtExpiry(token) ?? Infinity);
        // Not past the token's own expiry: asking again then would only hear that it expired.
        const refreshAt = now + this.cacheMs * REFRESH_AFTER < expiresAt ? now + this.cacheMs * REFRESH_AFTER : Infinity;
        this.tokens.set(key, 'accepted', identity, expiresAt, refreshAt);
      } else {
        this.tokens.set(key, 'refused', identity, now + Math.min(NEGATIVE_TTL_MS, this.cacheMs));
      }
      return identity;
    });
  }

  /** Whether the identity may GET this non-resource path (RBAC nonResourceURLs). */
  async mayGet(identity: Extract<TokenIdentity, { authenticated: true }>, path: string): Promise<boolean> {
    const key = accessKey(identity, path);
    const cached = this.access.entry(key, this.now());
    if (cached) {
      this.counters.cached('subjectaccessreview');
      return cached.value;
    }
    return this.once(`subjectaccessreview\0${key}`, async () => {
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
      if (allowed) this.access.set(key, 'accepted', true, this.now() + this.cacheMs);
      else this.access.set(key, 'refused', false, this.now() + Math.min(NEGATIVE_TTL_MS, this.cacheMs));
      return allowed;
    });
  }

  /** The node a pod runs on (spec.nodeName), for tokens that name their pod but not its node. */
  async podNode(namespace: string, pod: string, podUid: string | undefined): Promise<string | undefined> {
    const key = JSON.stringify([namespace, pod, podUid ?? null]);
    // "Not found" is an answer too, held for the refusal lifetime: an agent retrying with the
    // token of a deleted pod must not cost a GET each time.
    const cached = this.pods.entry(key, this.now());
    if (cached) {
      this.counters.cached('pod');
      return cached.value;
    }
    return this.once(`pod\0${key}`, async () => {
      this.counters.asked('pod');
      const res = await this.api.request<{ metadata?: { uid?: string }; spec?: { nodeName?: string } }>('GET', `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}`, undefined, { timeoutMs: 10_000 });
      if (res.status !== 200 && res.status !== 404) throw new Error(`GET pod ${namespace}/${pod}: ${res.status}`);
      // A pod of that name but another uid is another pod: the token's pod is gone.
      const node = res.status === 200 && (podUid === undefined || res.body.metadata?.uid === podUid) ? res.body.spec?.nodeName : undefined;
      // A pod never moves to another node: its answer holds as long as the token does.
      if (node) this.pods.set(key, 'accepted', node, this.now() + this.cacheMs);
      else this.pods.set(key, 'refused', undefined, this.now() + Math.min(NEGATIVE_TTL_MS, this.cacheMs));
      return node;
    });
  }
}
