// Sends reports to the aggregator with undici (design.md section 3): keep-alive, a total time
// limit per attempt, a bearer token re-read when its file changes (a rotated Secret), a custom CA,
// and retries with exponential backoff and full jitter on connection errors, 429 and 5xx,
// honouring Retry-After. Other 4xx are final: sending the same report again cannot help.
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

  async function attempt(body: string, signal?: AbortSignal): Promise<{ status: number; retryAfterMs?: number; message: string } | { error: string }> {
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
      return { error: describe(err) };
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

function describe(err: unknown): string {
  const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
  const code = e.code ?? e.cause?.code;
  if (e.name === 'TimeoutError') return 'no answer in time';
  return [code, e.cause?.message ?? e.message].filter(Boolean).join(': ');
}
