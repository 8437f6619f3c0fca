// "Authorization: Bearer <token>". The scheme is case-insensitive and followed by one or more
// spaces (RFC 7235 section 2.1, RFC 6750 section 2.1): "bearer" and "BEARER" are the same.
const BEARER = /^bearer +(\S+) *$/i;

export function bearerToken(authorization: string | undefined): string | undefined {
  return authorization === undefined ? undefined : BEARER.exec(authorization)?.[1];
}

/** A JWT's claims, unverified: only ever a hint, checked by the API server before it counts. */
function jwtClaims(token: string): Record<string, unknown> | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown;
    return typeof claims === 'object' && claims !== null && !Array.isArray(claims) ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** When a JWT says it expires (its exp claim, ms since the epoch); undefined when it says nothing. */
export function jwtExpiry(token: string): number | undefined {
  const exp = jwtClaims(token)?.exp;
  return typeof exp === 'number' ? exp * 1000 : undefined;
}

// A token the kubelet projects names one audience, TokenRequest's callers a few.
const MAX_AUDIENCES = 8;
const MAX_AUDIENCE = 256;

/**
 * The audiences a JWT claims (its aud claim, a string or a list: RFC 7519 section 4.1.3),
 * unverified; undefined when it claims none or more than a token minted for a few audiences would.
 */
export function jwtAudiences(token: string): string[] | undefined {
  const aud = jwtClaims(token)?.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (audiences.length === 0 || audiences.length > MAX_AUDIENCES) return undefined;
  if (!audiences.every((a): a is string => typeof a === 'string' && a !== '' && a.length <= MAX_AUDIENCE)) return undefined;
  return audiences;
}
