#!/usr/bin/env node
// Starts the aggregator: config, token, server timeouts, graceful shutdown. Nothing else.
import closeWithGrace from 'close-with-grace';
import { buildApp, createLogger } from './app.js';
import { readTokenFile, TokenCheck, watchTokenFile } from './auth.js';
import { ConfigError, loadConfig, type Config } from './config.js';

async function main(): Promise<void> {
  let config: Config;
  let token: TokenCheck;
  try {
    config = loadConfig(process.env);
    token = new TokenCheck(config.authTokenFile === undefined ? undefined : await readTokenFile(config.authTokenFile));
  } catch (error) {
    const message = error instanceof ConfigError ? error.message : `invalid configuration: AUTH_TOKEN_FILE: ${(error as Error).message}`;
    process.stderr.write(`nodeprep-aggregator: ${message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel);
  const app = await buildApp({ config, token, logger });
  if (config.authTokenFile !== undefined) {
    const stop = watchTokenFile(config.authTokenFile, token, logger);
    app.addHook('onClose', async () => stop());
  } else {
    logger.warn('AUTH_TOKEN_FILE is not set: POST /v1/reports accepts reports without a token');
  }

  // Agents keep connections alive between reports; a slow or stuck client must not hold a socket.
  app.server.requestTimeout = 30_000;
  app.server.headersTimeout = 10_000;
  app.server.keepAliveTimeout = 65_000; // longer than common load balancers' 60 s idle timeout
  app.server.timeout = 60_000;

  closeWithGrace({ delay: 10_000, logger: { error: (msg: unknown) => logger.error({ err: msg }, 'forced shutdown') } }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an error');
    else logger.info({ signal }, 'shutting down');
    await app.close();
  });

  await app.listen({ port: config.port, host: config.host });
  logger.info({ ttlSeconds: config.ttlSeconds, dropAfterSeconds: config.dropAfterSeconds, auth: token.enabled, illumioChainPatterns: config.illumioChainPatterns }, 'aggregator ready');
}

main().catch((error: unknown) => {
  process.stderr.write(`nodeprep-aggregator: failed to start: ${(error as Error).message}\n`);
  process.exit(1);
});
