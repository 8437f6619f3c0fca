// Shared bearer tokens, for agents that cannot present a ServiceAccount token this aggregator can
// review: agents of other clusters (the chart's agent.aggregatorUrl), and every agent when the
// cluster view is off. Each token is bound to one cluster name: a file (a mounted Secret) holds
// lines "<token> <cluster>"; a line with a token alone is bound to this aggregator's own cluster.
// A report whose cluster differs from its token's is refused, so one cluster's agents cannot
// speak for another's nodes.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { CLUSTER_NAME_RULE, isClusterName } from '../../protocol/names.js';

const digest = (text: string) => createHash('sha256').update(text).digest('hex');

export class SharedTokenFileError extends Error {
  override name = 'SharedTokenFileError';
}

/**
 * Parses the token file: one token per line, optionally followed by a cluster name; "#" starts
 * a comment. Tokens are kept as SHA-256 digests only.
 */
export function parseSharedTokens(text: string, homeCluster: string, file = 'AUTH_TOKEN_FILE'): Map<string, string> {
  const tokens = new Map<string, string>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const [token, cluster = homeCluster, ...rest] = line.split(/\s+/);
    if (rest.length > 0) throw new SharedTokenFileError(`${file} line ${i + 1}: expected "<token> [cluster]", got ${rest.length + 2} words`);
    if (cluster !== '' && !isClusterName(cluster)) throw new SharedTokenFileError(`${file} line ${i + 1}: the cluster name must be ${CLUSTER_NAME_RULE}`);
    const key = digest(token!);
    const bound = tokens.get(key);
    if (bound !== undefined && bound !== cluster) throw new SharedTokenFileError(`${file} line ${i + 1}: the same token is bound to two clusters`);
    tokens.set(key, cluster);
  }
  if (tokens.size === 0) throw new SharedTokenFileError(`${file} holds no token`);
  return tokens;
}

export class SharedTokens {
  private tokens = new Map<string, string>();

  get size(): number {
    return this.tokens.size;
  }

  replace(tokens: Map<string, string>): void {
    this.tokens = tokens;
  }

  /**
   * The cluster a token is bound to, or undefined. The lookup is by SHA-256 digest, so its time
   * says nothing an attacker can use about the tokens: they would need digest prefixes.
   */
  clusterOf(token: string): string | undefined {
    return this.tokens.get(digest(token));
  }
}

/** Reads the file now; throws a SharedTokenFileError when it is empty or malformed. */
export async function loadSharedTokens(file: string, homeCluster: string): Promise<SharedTokens> {
  const tokens = new SharedTokens();
  tokens.replace(parseSharedTokens(await readFile(file, 'utf8'), homeCluster, file));
  return tokens;
}

/**
 * Re-reads the file every `intervalMs` when its modification time changes. Kubernetes updates a
 * mounted Secret by swapping a symlink, which fs.watch misses; polling stat does not. A file
 * half-way through an update keeps the previous tokens: agents must not be locked out.
 */
export function watchSharedTokens(file: string, homeCluster: string, tokens: SharedTokens, log: Logger, intervalMs = 10_000): () => void {
  let lastMtime = 0;
  let failing = false;
  const poll = async () => {
    try {
      const { mtimeMs } = await stat(file);
      if (mtimeMs === lastMtime) return;
      const first = lastMtime === 0;
      tokens.replace(parseSharedTokens(await readFile(file, 'utf8'), homeCluster, file));
      lastMtime = mtimeMs;
      failing = false;
      if (!first) log.info({ file, tokens: tokens.size }, 'shared tokens reloaded');
    } catch (error) {
      if (!failing) log.warn({ file, err: (error as Error).message }, 'shared token file unreadable; keeping the previous tokens');
      failing = true;
    }
  };
  void poll();
  const timer = setInterval(() => void poll(), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
