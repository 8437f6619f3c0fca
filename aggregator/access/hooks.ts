// The access layer in front of the routes (kube-rbac-proxy's shape): two fastify hooks that read
// the matched route's declaration (routes.ts), ask the policies (policy.ts), and turn a refusal
// into a 401, 403 or 503 that says why, counted in a metric and logged by cause (refusal-log.ts).
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler, preHandlerAsyncHookHandler } from 'fastify';
import type { NodeReport } from '../../protocol/report.js';
import { HttpError } from '../errors.js';
import { bearerToken } from './bearer.js';
import type { ReaderPolicy, Refusal, Sender, SenderPolicy } from './policy.js';
import type { RefusalKind, RefusalLog } from './refusal-log.js';
import { matchedPath } from './routes.js';

declare module 'fastify' {
  interface FastifyRequest {
    sender: Sender | undefined;
  }
}

export interface AccessHookOptions {
  senders: SenderPolicy;
  readers: ReaderPolicy;
  log: RefusalLog;
  // A refused read, by reason, for the metrics. Refused reports are counted by the reports
  // route's error handler, which sees every refusal of a report, the body's included.
  readRefused: (reason: string) => void;
  // An agent turned away with a 503 (its token could not be reviewed now): until it is heard,
  // its node's silence says nothing (NODE_NO_AGENT waits, engine.ts).
  agentTurnedAway?: () => void;
}

function toError(refusal: Refusal, reply: FastifyReply): HttpError {
  if (refusal.status === 401) reply.header('www-authenticate', 'Bearer');
  if (refusal.status === 503) reply.header('retry-after', '5');
  return new HttpError(refusal.status, refusal.message, refusal.reason);
}

const isRefusal = (x: Sender | Refusal): x is Refusal => 'status' in x;

/**
 * onRequest (before the body is read: an unknown caller costs no parsing) and preHandler (a
 * report's node and cluster, once the body is read), added once for every route.
 */
export function accessHooks({ senders, readers, log, readRefused, agentTurnedAway }: AccessHookOptions): { onRequest: onRequestAsyncHookHandler; preHandler: preHandlerAsyncHookHandler } {
  const refuse = (kind: RefusalKind, refusal: Refusal, request: FastifyRequest, reply: FastifyReply): HttpError => {
    log.refused(kind, refusal, { ip: request.ip, route: `${request.method} ${request.routeOptions.url}` });
    if (kind === 'read') readRefused(refusal.reason);
    else if (refusal.status === 503) agentTurnedAway?.();
    return toError(refusal, reply);
  };
  return {
    onRequest: async (request, reply) => {
      // No route matched: the not-found handler answers 404, whatever the spelling.
      if (request.is404) return;
      const access = request.routeOptions.config.access;
      switch (access) {
        case 'open':
          return;
        case 'reader': {
          const route = request.routeOptions.url!;
          const refusal = await readers.check(bearerToken(request.headers.authorization), matchedPath(route, request.params as Record<string, string>), route);
          if (refusal) throw refuse('read', refusal, request, reply);
          return;
        }
        case 'agent': {
          const sender = await senders.authenticate(bearerToken(request.headers.authorization));
          if (isRefusal(sender)) throw refuse('report', sender, request, reply);
          request.sender = sender;
          return;
        }
        default:
          // Unreachable while routes.ts refuses undeclared routes at start; deny all the same.
          throw new HttpError(403, 'this route declares no access', 'other');
      }
    },
    preHandler: async (request, reply) => {
      if (request.is404 || request.routeOptions.config.access !== 'agent') return;
      const refusal = await senders.authorize(request.sender!, request.body as NodeReport);
      if (refusal) throw refuse('report', refusal, request, reply);
    },
  };
}
