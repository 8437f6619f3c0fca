// Sends reports to the aggregator with undici (design.md section 3): keep-alive, a total time
// limit per attempt, a bearer token re-read when its file changes (a rotated Secret), a custom CA,
// and retries with exponential backoff and full jitter on connection errors, 429 and 5xx,
// honouring Retry-After. Other 4xx are final: sending the same report again cannot help.
// A certificate the agent does not trust is not an outage either: retrying at once cannot fix it,
// so the sender says so after one attempt, and the run loop tries again at the next sample (a CA
// bundle or a server certificate may be replaced meanwhile).
import { readFileSync, statSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, request } from 'undici';
import type { NodeReport } from '../protocol/report.js';

export interface SenderOptions {
  url: string; // the aggregator's base URL
  tokenFile?: string;
  caFile?: string;
  attemptTimeoutMs?: number;
  retries?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

export type SendResult =
  | { outcome: 'delivered'; status: number; attempts: number }
  | { outcome: 'rejected'; status: number; message: string; attempts: number } // 4xx: fix something
  | { outcome: 'unreachable'; message: string; attempts: number } // worth trying again later
  | { outcome: 'untrusted'; reason: string; message: string; attempts: number } // TLS: the certificate was rejected
  | { outcome: 'aborted'; attempts: number };

export interface Sender {
  send(report: NodeReport, signal?: AbortSignal): Promise<SendResult>;
  close(): Promise<void>;
}

export function createSender(opts: SenderOptions): Sender {
  const endpoint = new URL('v1/reports', opts.url.endsWith('/') ? opts.url : `${opts.url}/`).toString();
  const attemptTimeoutMs = opts.attemptTimeoutMs ?? 10_000;
  const retries = opts.retries ?? 4;
  const base = opts.backoffBaseMs ?? 500;
  const cap = opts.backoffMaxMs ?? 15_000;
  const dispatcher = new Agent({
    keepAliveTimeout: 30_000,
    connectTimeout: Math.min(attemptTimeoutMs, 5_000),
    headersTimeout: attemptTimeoutMs,
    bodyTimeout: attemptTimeoutMs,
    ...(opts.caFile ? { connect: { ca: readFileSync(opts.caFile, 'utf8') } } : {}),
  });
  const token = opts.tokenFile ? tokenReader(opts.tokenFile) : () => undefined;

  async function attempt(body: string, signal?: AbortSignal): Promise<{ status: number; retryAfterMs?: number; message: string } | { error: string; certificate?: string }> {
    const bearer = token();
    try {
      const res = await request(endpoint, {
        method: 'POST',
        dispatcher,
        body,
        headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
        signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(attemptTimeoutMs)]) : AbortSignal.timeout(attemptTimeoutMs),
      });
      const text = await res.body.text();
      return { status: res.statusCode, retryAfterMs: parseRetryAfter(res.headers['retry-after']), message: errorMessage(text) };
    } catch (err) {
      const certificate = certificateProblem(err);
      return certificate ? { error: describe(err), certificate } : { error: describe(err) };
    }
  }

  return {
    async send(report, signal) {
      const body = JSON.stringify(report);
      let last = 'no attempt';
      for (let n = 0; n <= retries; n++) {
        if (signal?.aborted) return { outcome: 'aborted', attempts: n };
        const r = await attempt(body, signal);
        if (signal?.aborted) return { outcome: 'aborted', attempts: n + 1 };
        let retryAfterMs: number | undefined;
        if ('error' in r && r.certificate) return { outcome: 'untrusted', reason: r.certificate, message: r.error, attempts: n + 1 };
        if ('error' in r) last = r.error;
        else if (r.status >= 200 && r.status < 300) return { outcome: 'delivered', status: r.status, attempts: n + 1 };
        else if (r.status === 429 || r.status >= 500) {
          last = `HTTP ${r.status}${r.message ? `: ${r.message}` : ''}`;
          retryAfterMs = r.retryAfterMs;
        } else return { outcome: 'rejected', status: r.status, message: r.message, attempts: n + 1 };
        if (n === retries) break;
        const delay = retryAfterMs ?? backoffDelay(n, base, cap);
        if (!(await sleep(Math.min(delay, cap * 4), signal))) return { outcome: 'aborted', attempts: n + 1 };
      }
      return { outcome: 'unreachable', message: last, attempts: retries + 1 };
    },
    close: () => dispatcher.close(),
  };
}

/** Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and Jitter"). */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random = Math.random): number {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** attempt));
}

/** Retry-After is either delta-seconds or an HTTP date (RFC 9110, 10.2.3). */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Reads the token file again only when its modification time or size changed. */
export function tokenReader(file: string): () => string | undefined {
  let stamp = '';
  let value: string | undefined;
  return () => {
    try {
      const st = statSync(file);
      const now = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (now !== stamp) {
        value = readFileSync(file, 'utf8').trim() || undefined;
        stamp = now;
      }
    } catch {
      stamp = '';
      value = undefined;
    }
    return value;
  };
}

/** Waits, or stops early when `signal` aborts; says whether the wait ran its course. */
function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return delay(ms, undefined, { signal }).then(
    () => true,
    () => false,
  );
}

function errorMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message.slice(0, 300);
  } catch {
    // not JSON
  }
  return body.slice(0, 300);
}

// OpenSSL's verification results as Node reports them (err.code), and Node's own host check.
const CERTIFICATE_ERRORS = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_CHAIN_TOO_LONG', 'CERT_REVOKED', 'INVALID_CA',
  'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The verification error when the server's certificate was rejected, else undefined. */
export function certificateProblem(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && CERTIFICATE_ERRORS.has(e.code)) return e.code;
  }
  return undefined;
}

function describe(err: unknown): string {
  const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
  const code = e.code ?? e.cause?.code;
  if (e.name === 'TimeoutError') return 'no answer in time';
  return [code, e.cause?.message ?? e.message].filter(Boolean).join(': ');
}
