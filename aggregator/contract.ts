// What the published contract (GET /openapi.json) says beyond each route's own schema, derived
// from what decides it so the two cannot drift: who must send a token (the route's access
// declaration, access/routes.ts, and whether this aggregator checks that kind of caller), and a
// 405 for a path that is served under other methods. An independent fuzzer (Schemathesis,
// test/contract/) holds the aggregator to the document.
import type { FastifyInstance, RouteOptions } from 'fastify';
import { ApiError } from '../protocol/api.js';
import type { Access } from './access/routes.js';
import { HttpError } from './errors.js';

/**
 * Documents, on every route registered after it, the bearer token its callers must send and the
 * refusals that come with checking it (401, 403, and 503 when the API server cannot answer a
 * review), where this aggregator checks its kind of caller. An unchecked route says nothing: in
 * local mode anyone may call it, and the document says so.
 */
export function documentAccess(app: FastifyInstance, checked: Record<Exclude<Access, 'open'>, boolean>): void {
  app.addHook('onRoute', (route: RouteOptions) => {
    const access = route.config?.access;
    if (access === undefined || access === 'open' || !checked[access]) return;
    const schema = route.schema ?? {};
    const response = (schema.response ?? {}) as Record<string, unknown>;
    route.schema = {
      ...schema,
      security: [{ bearer: [] }],
      response: { 401: ApiError, 403: ApiError, 503: ApiError, ...response },
    } as RouteOptions['schema'];
  });
}

/**
 * 405 with an Allow header (RFC 9110 section 15.5.6) when no route matches the method but one
 * matches the path under another method; 404 otherwise, as before. The router decides, with the
 * request's own URL: the same spellings reach the same routes as for the method that is served.
 */
export function methodNotAllowed(app: FastifyInstance): void {
  const methods = new Set<string>();
  app.addHook('onRoute', (route: RouteOptions) => {
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) methods.add(method);
  });
  // onRequest: before a body is read, so a body of any type (or none) gets the same answer.
  app.addHook('onRequest', async (request, reply) => {
    if (!request.is404) return;
    const allowed = [...methods].filter((method) => app.findRoute({ method, url: request.url }) !== null);
    if (allowed.length === 0) return;
    reply.header('allow', allowed.join(', '));
    throw new HttpError(405, `method ${request.method} is not allowed here (allowed: ${allowed.join(', ')})`);
  });
}
