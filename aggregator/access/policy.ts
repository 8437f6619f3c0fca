// Who may send which report, and who may read (design.md section 9, identity): one small layer in
// front of the routes (fastify hooks in hooks.ts), the decisions here.
//
// Senders. An agent of this cluster presents its projected ServiceAccount token (audience
// AGENT_TOKEN_AUDIENCE): a TokenReview says whose it is; only AGENT_SERVICE_ACCOUNT is accepted,
// and only for the node its pod runs on (the token's node-name claim, else its pod's
// spec.nodeName). Agents of other clusters, or every agent while the cluster view is off, present
// a shared token bound to one cluster name (shared-tokens.ts).
//
// Readers. With the cluster view on, every route that declares `reader` (routes.ts) needs a bearer
// token that a TokenReview accepts and a SubjectAccessReview allows for the decoded path the
// router matched (RBAC nonResourceURLs, the chart's <fullname>-viewer ClusterRole). With the view
// off (local mode) reads are open.
//
// A refusal's cause (what refusal-log.ts logs once a minute) holds only what the aggregator can
// vouch for: the reason, a route's pattern, an identity the API server returned. Never a path, a
// report's names or an authenticator's message: a caller would make each refusal a new cause.
import type { NodeReport } from '../../protocol/report.js';
import { jwtAudiences } from './bearer.js';
import type { Reviews, TokenIdentity } from './reviews.js';
import type { SharedTokens } from './shared-tokens.js';

// The claims the API server adds to a token bound to a pod (KEP-4193), as TokenReview extra.
const NODE_NAME = 'authentication.kubernetes.io/node-name';
const POD_NAME = 'authentication.kubernetes.io/pod-name';
const POD_UID = 'authentication.kubernetes.io/pod-uid';

export type Sender =
  // Nothing to check with (no shared tokens, no cluster view): local mode.
  | { kind: 'open' }
  | { kind: 'shared'; cluster: string }
  | { kind: 'agent'; serviceAccount: string; node?: string; pod?: { namespace: string; name: string; uid?: string } };

export type RejectReason = 'unauthorized' | 'forbidden_audience' | 'forbidden_service_account' | 'forbidden_node' | 'forbidden_cluster' | 'forbidden_reader' | 'review_unavailable';

export interface Refusal {
  // 503: the API server could not be asked; worth trying again (agents retry 5xx).
  status: 401 | 403 | 503;
  reason: RejectReason;
  message: string;
  // What to log, once a minute at most (refusal-log.ts): a misconfigured agent retries forever.
  cause: string;
}

export interface SenderPolicyOptions {
  shared?: SharedTokens;
  // Without reviews (cluster view off) ServiceAccount tokens cannot be checked.
  reviews?: Reviews;
  agentServiceAccount?: string; // "<namespace>/<name>"
  audience: string;
  homeCluster: string;
}

const refuse = (status: 401 | 403, reason: RejectReason, message: string, cause = message): Refusal => ({ status, reason, message, cause });

/** The API server could not answer a review: not the caller's fault, and worth another try. */
function unavailable(err: unknown): Refusal {
  const message = `cannot check the token now: the Kubernetes API did not answer the review (${(err as Error).message.slice(0, 200)})`;
  return { status: 503, reason: 'review_unavailable', message, cause: 'review unavailable' };
}

export class SenderPolicy {
  constructor(private readonly options: SenderPolicyOptions) {}

  /** Whether anything is checked at all (no shared tokens and no reviews: reports are open). */
  get enabled(): boolean {
    return this.options.shared !== undefined || (this.options.reviews !== undefined && this.options.agentServiceAccount !== undefined);
  }

  /** Who sends, from the bearer token, before the body is read. */
  async authenticate(token: string | undefined): Promise<Sender | Refusal> {
    if (!this.enabled) return { kind: 'open' };
    if (token === undefined) return refuse(401, 'unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
    const cluster = this.options.shared?.clusterOf(token);
    if (cluster !== undefined) return { kind: 'shared', cluster };
    const { reviews, agentServiceAccount } = this.options;
    if (!reviews || !agentServiceAccount) return refuse(401, 'unauthorized', 'unknown bearer token');
    let identity: TokenIdentity;
    try {
      identity = await reviews.tokenReview(token, [this.options.audience]);
    } catch (err) {
      return unavailable(err);
    }
    if (!identity.authenticated) {
      const minted = await this.mintedFor(token, identity);
      if (minted) {
        const whose = minted.length > 0 ? `is for audience ${minted.map((a) => `"${a}"`).join(', ')}, not "${this.options.audience}"` : `is not confirmed for audience "${this.options.audience}"`;
        return refuse(403, 'forbidden_audience', `the token ${whose}: project the ServiceAccount token with audience ${this.options.audience}`, 'wrong audience');
      }
      return refuse(401, 'unauthorized', `the token is not accepted: ${identity.error.slice(0, 200)}`, 'token not accepted');
    }
    const [namespace, name] = agentServiceAccount.split('/');
    if (identity.username !== `system:serviceaccount:${namespace}:${name}`) {
      return refuse(403, 'forbidden_service_account', `${identity.username} may not send reports: only the agents' ServiceAccount ${agentServiceAccount} may`, `wrong service account ${identity.username}`);
    }
    const node = identity.extra[NODE_NAME]?.[0];
    const pod = identity.extra[POD_NAME]?.[0];
    const podUid = identity.extra[POD_UID]?.[0];
    return {
      kind: 'agent',
      serviceAccount: identity.username,
      ...(node ? { node } : {}),
      ...(pod ? { pod: { namespace: namespace!, name: pod, ...(podUid ? { uid: podUid } : {}) } } : {}),
    };
  }

  /**
   * The audiences a token refused for ours was minted for, when the API server vouches for them:
   * an agent whose token was projected for another audience is misconfigured, not an unknown
   * caller, and the 403 says which audience is wanted. Decided from what the API server verified,
   * never from an authenticator's error text (an OIDC or webhook authenticator's message may say
   * "audience" about any token): the API server confirmed the token but not our audience, or a
   * second review with the audiences the token claims (read unverified from the JWT) accepts it.
   */
  private async mintedFor(token: string, refused: Extract<TokenIdentity, { authenticated: false }>): Promise<string[] | undefined> {
    if (refused.audiences !== undefined) return refused.audiences;
    const claimed = jwtAudiences(token)?.filter((a) => a !== this.options.audience);
    if (!claimed || claimed.length === 0) return undefined;
    try {
      const identity = await this.options.reviews!.tokenReview(token, claimed);
      return identity.authenticated ? claimed.filter((a) => identity.audiences.includes(a)) : undefined;
    } catch {
      // The refusal stands; only its reason is less precise.
      return undefined;
    }
  }

  /** Whether that sender may send this report: its node, its cluster. */
  async authorize(sender: Sender, report: Pick<NodeReport, 'node'>): Promise<Refusal | undefined> {
    const cluster = report.node.cluster ?? '';
    if (sender.kind === 'open') return undefined;
    if (sender.kind === 'shared') {
      if (cluster === sender.cluster) return undefined;
      return refuse(403, 'forbidden_cluster', `this token is bound to ${sender.cluster === '' ? 'this aggregator\'s own cluster' : `cluster ${sender.cluster}`}, and the report is from ${cluster === '' ? 'no named cluster' : `cluster ${cluster}`}`, `another cluster's report with the token of cluster "${sender.cluster}"`);
    }
    if (cluster !== this.options.homeCluster) {
      return refuse(403, 'forbidden_cluster', `agents of this cluster report as cluster "${this.options.homeCluster}" (CLUSTER_NAME), not "${cluster}"`, 'an agent of this cluster reports another cluster');
    }
    let node = sender.node;
    if (node === undefined && sender.pod && this.options.reviews) {
      try {
        node = await this.options.reviews.podNode(sender.pod.namespace, sender.pod.name, sender.pod.uid);
      } catch (err) {
        return unavailable(err);
      }
    }
    if (node === undefined) {
      return refuse(403, 'forbidden_node', 'the token names no node: it must be the ServiceAccount token projected into the agent pod (bound to the pod)', 'token without node');
    }
    if (node !== report.node.name) {
      return refuse(403, 'forbidden_node', `the token is for the agent on node ${node}, and the report is for node ${report.node.name}`, `the agent on node ${node} sent another node's report`);
    }
    return undefined;
  }
}

export class ReaderPolicy {
  constructor(private readonly reviews: Reviews | undefined) {}

  /** Reads are checked only when there is an API to ask (the cluster view on). */
  get enabled(): boolean {
    return this.reviews !== undefined;
  }

  /** May the token's holder GET `path` (decoded, as matched), on `route` (its pattern, for the log)? */
  async check(token: string | undefined, path: string, route: string): Promise<Refusal | undefined> {
    if (!this.reviews) return undefined;
    if (token === undefined) return refuse(401, 'unauthorized', 'missing bearer token: reading needs a token (kubectl create token <serviceaccount>) allowed by the nodeprep-viewer ClusterRole');
    let identity: TokenIdentity;
    let allowed: boolean;
    try {
      identity = await this.reviews.tokenReview(token, []);
      if (!identity.authenticated) return refuse(401, 'unauthorized', `the token is not accepted: ${identity.error.slice(0, 200)}`, 'reader token not accepted');
      allowed = await this.reviews.mayGet(identity, path);
    } catch (err) {
      return unavailable(err);
    }
    if (allowed) return undefined;
    return refuse(403, 'forbidden_reader', `${identity.username} may not get ${path}: bind it to the nodeprep-viewer ClusterRole (kubectl create clusterrolebinding ... --clusterrole=<release>-viewer)`, `reader ${identity.username} on ${route}`);
  }
}
