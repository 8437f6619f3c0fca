// The access layer in front of the routes (kube-rbac-proxy's shape): fastify hooks that ask the
// policies (policy.ts) and turn a refusal into a 401 or 403 that says why, counted in a metric and
// logged once per cause, never once per request.
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler, preHandlerAsyncHookHandler } from 'fastify';
import type { Logger } from 'pino';
import type { NodeReport } from '../../protocol/report.js';
import { HttpError } from '../errors.js';
import { bearerToken } from './bearer.js';
import type { ReaderPolicy, Refusal, Sender, SenderPolicy } from './policy.js';

declare module 'fastify' {
  interface FastifyRequest {
    sender: Sender | undefined;
  }
}

const MAX_CAUSES = 1024;

/** Logs each cause once (the first MAX_CAUSES of them), so a client retrying forever logs one line. */
export class OncePerCause {
  private readonly seen = new Set<string>();

  constructor(private readonly log: Logger) {}

  refused(kind: 'report' | 'read', refusal: Refusal, request: FastifyRequest): void {
    const key = `${kind}\0${refusal.reason}\0${refusal.cause}`;
    if (this.seen.has(key) || this.seen.size >= MAX_CAUSES) return;
    this.seen.add(key);
    this.log.warn({ status: refusal.status, reason: refusal.reason, cause: refusal.cause, from: request.ip }, kind === 'report' ? 'report refused' : 'read refused');
  }
}

function toError(refusal: Refusal, reply: FastifyReply): HttpError {
  if (refusal.status === 401) reply.header('www-authenticate', 'Bearer');
  if (refusal.status === 503) reply.header('retry-after', '5');
  return new HttpError(refusal.status, refusal.message, refusal.reason);
}

const isRefusal = (x: Sender | Refusal): x is Refusal => 'status' in x;

/** onRequest (before the body is read: an unknown caller costs no parsing) and preHandler (the report's node and cluster). */
export function senderHooks(policy: SenderPolicy, once: OncePerCause): { onRequest: onRequestAsyncHookHandler; preHandler: preHandlerAsyncHookHandler } {
  return {
    onRequest: async (request, reply) => {
      const sender = await policy.authenticate(bearerToken(request.headers.authorization));
      if (isRefusal(sender)) {
        once.refused('report', sender, request);
        throw toError(sender, reply);
      }
      request.sender = sender;
    },
    preHandler: async (request, reply) => {
      const refusal = await policy.authorize(request.sender!, request.body as NodeReport);
      if (refusal) {
        once.refused('report', refusal, request);
        throw toError(refusal, reply);
      }
    },
  };
}

// What readers must be allowed: the API and the metrics; probes and the API description stay open.
const checked = (path: string) => path.startsWith('/v1/') || path === '/metrics';

/** A global onRequest hook for GETs: TokenReview + SubjectAccessReview for the path. */
export function readerHook(policy: ReaderPolicy, once: OncePerCause, counted: (reason: string) => void): onRequestAsyncHookHandler {
  return async (request, reply) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return;
    const path = request.url.split('?', 1)[0]!;
    if (!checked(path)) return;
    const refusal = await policy.check(bearerToken(request.headers.authorization), path);
    if (!refusal) return;
    once.refused('read', refusal, request);
    counted(refusal.reason);
    throw toError(refusal, reply);
  };
}
