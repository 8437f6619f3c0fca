// Who may call each route, said by the route itself (design.md section 10, access): its `config`
// declares `access`, and the access hooks (hooks.ts) read the declaration of the route the router
// matched, never the raw URL. A path has many spellings (percent-encoded letters, the absolute
// form "GET http://host/v1/findings", ...) that the router maps to one route; deciding from the
// URL would let one of them through unchecked. Deny by default: a route that declares nothing, a
// plugin's included, stops the aggregator at start.
import type { FastifyInstance, RouteOptions } from 'fastify';

// open: anyone (probes, the API description). reader: a bearer token that a TokenReview accepts
// and a SubjectAccessReview allows for the path (when the cluster view is on). agent: a report's
// sender (policy.ts SenderPolicy).
export const ACCESS = ['open', 'reader', 'agent'] as const;
export type Access = (typeof ACCESS)[number];

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
}

export class RouteAccessError extends Error {
  override name = 'RouteAccessError';
}

const isAccess = (value: unknown): value is Access => (ACCESS as readonly unknown[]).includes(value);

// A segment of a route's path: text, a named parameter (":name"), or the wildcard ("*").
// find-my-way's other forms (regular expressions, several parameters in one segment) are refused
// at start: the path that a SubjectAccessReview names could not be rebuilt from them.
const PARAMETER = /^:([A-Za-z_][A-Za-z0-9_]*)$/;
const PLAIN = /^[^:*(]*$/;

function checkPattern(url: string): void {
  for (const segment of url.split('/')) {
    if (segment === '*' || PLAIN.test(segment) || PARAMETER.test(segment)) continue;
    throw new RouteAccessError(`route ${url}: the access layer cannot rebuild the path of segment "${segment}" (use a plain ":name" parameter or "*")`);
  }
}

/**
 * Refuses, at start, every route that does not declare who may call it; keeps the declarations
 * (method and pattern to access) for the start log and the tests. Add it before any route or
 * plugin: fastify runs onRoute hooks for the routes registered after them, HEAD routes included.
 */
export function declareRouteAccess(app: FastifyInstance): Map<string, Access> {
  const declared = new Map<string, Access>();
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const access = route.config?.access;
    if (!isAccess(access)) {
      throw new RouteAccessError(`route ${methods.join(',')} ${route.url} declares no access (config.access: ${ACCESS.join(' | ')}): every route says who may call it`);
    }
    checkPattern(route.url!);
    for (const method of methods) declared.set(`${method} ${route.url}`, access);
  });
  return declared;
}

/**
 * The path the router matched, decoded, without the query: the route's pattern with each
 * parameter replaced by its decoded value ("/v1/nodes/:name" and name "edge/n1" give
 * "/v1/nodes/edge/n1"), as kube-apiserver authorises its own non-resource paths (Go's decoded
 * URL.Path). Whatever the request's spelling, one route and one value give one path.
 */
export function matchedPath(pattern: string, params: Record<string, string | undefined>): string {
  return pattern
    .split('/')
    .map((segment) => {
      if (segment === '*') return params['*'] ?? '';
      const name = PARAMETER.exec(segment)?.[1];
      return name === undefined ? segment : (params[name] ?? '');
    })
    .join('/');
}
