// Configuration from the environment (design.md section 5), validated once at start-up.
import { z } from 'zod';

// Illumio does not publish the names of the chains the VEN writes (design.md section 6), so the
// default only matches chains named after the product; set the real prefixes where known.
export const DEFAULT_ILLUMIO_CHAIN_PATTERNS = 'illumio*,ILLUMIO*,Illumio*';

const seconds = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a number of seconds` })
    .positive({ error: `${name} must be more than 0` })
    .max(365 * 24 * 3600, { error: `${name} must be at most a year` });

const EnvSchema = z
  .object({
    PORT: z.coerce.number({ error: 'PORT must be a port number' }).int({ error: 'PORT must be a whole number' }).min(0).max(65535, { error: 'PORT must be at most 65535' }).default(8080),
    // All IPv4 interfaces: in a pod the Service reaches the pod IP. Set HOST=:: for IPv6 clusters.
    HOST: z.string().min(1).default('0.0.0.0'),
    AUTH_TOKEN_FILE: z.string().min(1).optional(),
    NODE_TTL_SECONDS: seconds('NODE_TTL_SECONDS').default(180),
    // Forget a node this long after its last report (node-feature-discovery garbage-collects
    // departed nodes the same way). Default: 1 hour, but never less than twice the TTL.
    NODE_DROP_AFTER_SECONDS: seconds('NODE_DROP_AFTER_SECONDS').optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { error: 'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent' }).default('info'),
    ILLUMIO_CHAIN_PATTERNS: z.string().default(DEFAULT_ILLUMIO_CHAIN_PATTERNS),
  })
  .transform((env, ctx) => {
    const dropAfterSeconds = env.NODE_DROP_AFTER_SECONDS ?? Math.max(3600, 2 * env.NODE_TTL_SECONDS);
    if (dropAfterSeconds <= env.NODE_TTL_SECONDS) {
      ctx.addIssue({ code: 'custom', path: ['NODE_DROP_AFTER_SECONDS'], message: 'NODE_DROP_AFTER_SECONDS must be more than NODE_TTL_SECONDS' });
      return z.NEVER;
    }
    return {
      port: env.PORT,
      host: env.HOST,
      authTokenFile: env.AUTH_TOKEN_FILE,
      ttlSeconds: env.NODE_TTL_SECONDS,
      dropAfterSeconds,
      logLevel: env.LOG_LEVEL,
      illumioChainPatterns: env.ILLUMIO_CHAIN_PATTERNS,
    };
  });

export type Config = z.output<typeof EnvSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads the config from an environment; throws a ConfigError naming the first bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // An empty variable means "not set", as in a Helm chart's `value: ""`.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = EnvSchema.safeParse(present);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const variable = String(issue.path[0] ?? 'environment');
  const message = issue.message.includes(variable) ? issue.message : `${variable}: ${issue.message}`;
  throw new ConfigError(`invalid configuration: ${message} (got ${JSON.stringify(env[variable] ?? '')})`);
}

/** How often to look for silent nodes: often enough that NODE_STALE shows within TTL + 1 s. */
export function sweepIntervalMs(ttlSeconds: number): number {
  return Math.min(1000, Math.max(50, (ttlSeconds * 1000) / 4));
}
