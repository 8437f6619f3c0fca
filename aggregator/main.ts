#!/usr/bin/env -S node --max-semi-space-size=8 --heap-growing-percent=50 --v8-pool-size=1
// Starts the aggregator: config, shared tokens, TLS, the cluster view, server timeouts, graceful
// shutdown. Nothing else.
//
// The node flags on the #! line bound V8's heap to what the aggregator holds. Measured with
// 100,000 nodes' reports loaded and ten paginated walks of them (npm run bench; issue 13 item 5):
// 480-510 MiB resident without them, varying from run to run, 330-340 MiB with them, for 5-10%
// fewer heartbeats a second and the same rate of changed reports.
// - --max-semi-space-size=8: the young generation sized for the garbage of a few hundred
//   requests (V8 lets it grow to 3 x 16 MiB), not for throughput alone.
// - --heap-growing-percent=50: after a full collection the old generation may grow by half
//   before the next, not up to fourfold (V8's factor when collections look cheap): the live
//   state grows steadily with the nodes, the garbage around it does not need to.
// - --v8-pool-size=1: one V8 helper thread instead of four. Each thread that allocates gets a
//   malloc arena of its own, and their fragments add up: with 5,000 nodes heartbeating (view
//   off) 185 MiB resident instead of 201, and a lower p99 on two cores. The aggregator's work is
//   on its main thread; the helper does concurrent marking and compiling in the background.
// Dockerfile.aggregator's ENTRYPOINT and the chart's command carry the same flags (a test checks).
import { readFile, stat } from 'node:fs/promises';
import type { Server as TlsServer } from 'node:tls';
import closeWithGrace from 'close-with-grace';
import type { Logger } from 'pino';
import { loadSharedTokens, watchSharedTokens, type SharedTokens } from './access/shared-tokens.js';
import { buildApp, createLogger } from './app.js';
import { loadClusterAccess } from './cluster/api.js';
import { ConfigError, loadConfig, type Config } from './config.js';

async function main(): Promise<void> {
  let config: Config;
  let shared: SharedTokens | undefined;
  let https: { key: string; cert: string } | undefined;
  try {
    config = loadConfig(process.env);
    if (config.authTokenFile !== undefined) shared = await loadSharedTokens(config.authTokenFile, config.homeCluster);
    if (config.tls) https = await readTls(config.tls);
  } catch (error) {
    const message = error instanceof ConfigError ? error.message : `invalid configuration: ${(error as Error).message}`;
    process.stderr.write(`nodeprep-aggregator: ${message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel);
  const cluster = loadClusterAccess(process.env, config.clusterView);
  const app = await buildApp({ config, logger, cluster, ...(shared ? { shared } : {}), ...(https ? { https } : {}) });
  if (config.authTokenFile !== undefined && shared) {
    const stop = watchSharedTokens(config.authTokenFile, config.homeCluster, shared, logger);
    app.addHook('onClose', async () => stop());
  }
  if (config.tls) {
    const server = app.server as unknown as TlsServer;
    const stop = watchTls(config.tls, (pair) => server.setSecureContext(pair), logger);
    app.addHook('onClose', async () => stop());
  }
  if (!app.access.senders) logger.warn('no shared token file (AUTH_TOKEN_FILE) and no cluster view to check ServiceAccount tokens: POST /v1/reports accepts reports from anyone');
  if (!app.access.readers) logger.warn('cluster view off: reads (/v1/*, /metrics) are not authenticated; keep the aggregator on loopback or behind a network policy');

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
  logger.info(
    {
      ttlSeconds: config.ttlSeconds,
      dropAfterSeconds: config.dropAfterSeconds,
      tls: config.tls !== undefined,
      senders: app.access.senders ? [shared ? `${shared.size} shared token(s)` : undefined, 'api' in cluster && config.agentServiceAccount ? `ServiceAccount ${config.agentServiceAccount}` : undefined].filter(Boolean).join(', ') : 'open',
      readers: app.access.readers ? 'TokenReview + SubjectAccessReview' : 'open',
      illumioChainPatterns: config.illumioChainPatterns,
      clusterView: 'api' in cluster ? `on (${cluster.source}: ${cluster.api.server})` : `off (${cluster.off})`,
      outlets: app.outlets,
    },
    'aggregator ready',
  );
}

async function readTls(tls: { certFile: string; keyFile: string }): Promise<{ key: string; cert: string }> {
  const [cert, key] = await Promise.all([readFile(tls.certFile, 'utf8'), readFile(tls.keyFile, 'utf8')]);
  return { cert, key };
}

/**
 * Serves a renewed certificate without a restart: cert-manager and the chart's Secret update the
 * mounted files by swapping a symlink, so poll their modification times (as for the tokens).
 */
function watchTls(tls: { certFile: string; keyFile: string }, apply: (pair: { key: string; cert: string }) => unknown, log: Logger, intervalMs = 10_000): () => void {
  let stamp = '';
  let failing = false;
  const poll = async () => {
    try {
      const [c, k] = await Promise.all([stat(tls.certFile), stat(tls.keyFile)]);
      const now = `${c.mtimeMs}:${k.mtimeMs}`;
      if (stamp === '') {
        stamp = now;
        return;
      }
      if (now === stamp) return;
      apply(await readTls(tls));
      stamp = now;
      failing = false;
      log.info({ certFile: tls.certFile }, 'TLS certificate reloaded');
    } catch (error) {
      // A pair half-way through an update (new certificate, old key) is retried at the next poll.
      if (!failing) log.warn({ err: (error as Error).message }, 'TLS certificate not reloaded; keeping the previous one');
      failing = true;
    }
  };
  void poll();
  const timer = setInterval(() => void poll(), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

main().catch((error: unknown) => {
  process.stderr.write(`nodeprep-aggregator: failed to start: ${(error as Error).message}\n`);
  process.exit(1);
});
