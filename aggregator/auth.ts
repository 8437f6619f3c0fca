// Bearer-token check for POST /v1/reports. The token lives in a file (a mounted Secret) and is
// re-read when the file changes, so rotating the Secret needs no restart.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { Logger } from 'pino';

const digest = (text: string) => createHash('sha256').update(text).digest();

export class TokenCheck {
  private expected: Buffer | undefined;

  constructor(token?: string) {
    if (token !== undefined) this.set(token);
  }

  get enabled(): boolean {
    return this.expected !== undefined;
  }

  set(token: string): void {
    this.expected = digest(token);
  }

  /**
   * Whether an Authorization header carries the token. Both sides are hashed to the same length
   * first, so the comparison takes the same time whatever the header holds.
   */
  accepts(authorization: string | undefined): boolean {
    if (this.expected === undefined) return true;
    const presented = authorization?.startsWith('Bearer ') ? authorization.slice(7).trim() : '';
    return timingSafeEqual(digest(presented), this.expected) && presented !== '';
  }
}

/** The token in a file: trimmed, and an empty file is an error (it would accept nobody). */
export async function readTokenFile(path: string): Promise<string> {
  const token = (await readFile(path, 'utf8')).trim();
  if (token === '') throw new Error(`AUTH_TOKEN_FILE ${path} is empty`);
  return token;
}

/**
 * Re-reads the token file every `intervalMs` when its modification time changes. Kubernetes
 * updates a mounted Secret by swapping a symlink, which fs.watch misses; polling stat does not.
 */
export function watchTokenFile(path: string, check: TokenCheck, log: Logger, intervalMs = 10_000): () => void {
  let lastMtime = 0;
  let failing = false;
  const poll = async () => {
    try {
      const { mtimeMs } = await stat(path);
      if (mtimeMs === lastMtime) return;
      const first = lastMtime === 0;
      check.set(await readTokenFile(path));
      lastMtime = mtimeMs;
      failing = false;
      if (!first) log.info({ file: path }, 'auth token reloaded');
    } catch (error) {
      // Keep the previous token: a Secret half-way through an update must not lock agents out.
      if (!failing) log.warn({ file: path, err: (error as Error).message }, 'auth token file unreadable; keeping the previous token');
      failing = true;
    }
  };
  void poll();
  const timer = setInterval(() => void poll(), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
