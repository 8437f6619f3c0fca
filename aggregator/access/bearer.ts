// "Authorization: Bearer <token>". The scheme is case-insensitive and followed by one or more
// spaces (RFC 7235 section 2.1, RFC 6750 section 2.1): "bearer" and "BEARER" are the same.
const BEARER = /^bearer +(\S+) *$/i;

export function bearerToken(authorization: string | undefined): string | undefined {
  return authorization === undefined ? undefined : BEARER.exec(authorization)?.[1];
}

/** When a JWT says it expires (its exp claim, ms since the epoch); undefined when it says nothing. */
export function jwtExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
