// Builds the aggregator (fastify/demo layout): plugins, then routes. Tests import this and use
// app.inject(); main.ts starts it.
import fastifySwagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, serializerCompiler } from 'fastify-type-provider-zod';
import { ZodType } from 'zod';
import { pino, type Logger } from 'pino';
import { MAX_REPORT_BYTES } from '../protocol/report.js';
import { accessHooks } from './access/hooks.js';
import { ReaderPolicy, SenderPolicy } from './access/policy.js';
import { RefusalLog } from './access/refusal-log.js';
import { Reviews } from './access/reviews.js';
import { declareRouteAccess, type Access } from './access/routes.js';
import type { SharedTokens } from './access/shared-tokens.js';
import { loadConfig, sweepIntervalMs, type Config } from './config.js';
import { compileChainPatterns } from './detect/illumio.js';
import { documentAccess, methodNotAllowed } from './contract.js';
import { errorBody, makeErrorHandler } from './errors.js';
import { Metrics } from './metrics.js';
import { findingRoutes } from './routes/findings.js';
import { nodeRoutes } from './routes/nodes.js';
import { operationRoutes } from './routes/operations.js';
import { reportRoutes } from './routes/reports.js';
import type { ClusterViewStatus } from '../protocol/api.js';
import type { ClusterAccess } from './cluster/api.js';
import { ClusterView } from './cluster/view.js';
import { Engine } from './engine.js';
import { IllumioChecks } from './illumio/checks.js';
import { illumioRoutes } from './routes/illumio.js';
import { Outlets } from './publish/outlet.js';
import { outletsFor, type PublishTuning } from './publish/outlets.js';

// Room for HTTP framing slack over the largest report the schema admits (MAX_REPORT_BYTES).
export const BODY_LIMIT = MAX_REPORT_BYTES + 16 * 1024;
// Node's default limit on a request's head (--max-http-header-size), the request line included.
const MAX_URL_BYTES = 16 * 1024;

declare module 'fastify' {
  interface FastifyInstance {
    engine: Engine;
    clusterView: { status: () => ClusterViewStatus };
    // Whether reports and reads are checked at all (for the start log), and who may call each
    // route ("GET /v1/nodes/:name" to reader), as the routes declared it.
    access: { senders: boolean; readers: boolean; routes: ReadonlyMap<string, Access> };
    // Where findings go (publish/), for the start log.
    outlets: string[];
  }
}

export type AppConfig = Pick<Config, 'ttlSeconds' | 'dropAfterSeconds' | 'logLevel' | 'illumioChainPatterns'> &
  Partial<
    Pick<Config, 'homeCluster' | 'noAgentGraceSeconds' | 'driftGraceSeconds' | 'agentServiceAccount' | 'agentTokenAudience' | 'reviewCacheSeconds' | 'illumio' | 'calicoConfigMaps' | 'publish'>
  >;

export interface AppOptions {
  config: AppConfig;
  // Shared tokens bound to clusters (access/shared-tokens.ts). Without them and without a
  // cluster view to review ServiceAccount tokens, POST /v1/reports is open.
  shared?: SharedTokens;
  // Serve HTTPS with this key and certificate (PEM); main.ts reloads them when the files change.
  https?: { key: string; cert: string };
  // A pino logger to use instead of one on stdout (tests capture logs this way).
  logger?: Logger;
  // The clock, for tests; and whether to sweep for stale nodes on a timer (tests call sweep()).
  now?: () => number;
  sweep?: boolean;
  // The Kubernetes API of the aggregator's own cluster, or why there is none (cluster view off).
  cluster?: ClusterAccess;
  // The outlets' intervals and bounds (publish/); production defaults without.
  publish?: PublishTuning;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      // Agents send the token on every report; it must never reach a log line.
      redact: { paths: ['req.headers.authorization', 'headers.authorization', 'authorization'], censor: '[redacted]' },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const logger = options.logger ?? createLogger(config.logLevel);

  const app = Fastify({
    loggerInstance: logger,
    ...(options.https ? { https: options.https } : {}),
    // Steady state must log nothing per report: requests are logged at debug by the hook below.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    // find-my-way answers 414 (not in the contract) for a parameter longer than this, measured
    // percent-encoded: a node key of 317 characters is up to 12 times that once encoded. The
    // request line is bounded by Node's header limit (16 KiB, else 431) before routing: with the
    // same figure here the router never refuses a name, and the route's schema does, with the
    // documented 400 naming params.name (protocol/api.ts NodeName).
    routerOptions: { maxParamLength: MAX_URL_BYTES },
  }) as unknown as FastifyInstance;
  // Zod validates in each route plugin (see routes/); zod serialises every response.
  app.setSerializerCompiler(serializerCompiler);
  // Before any route or plugin: each route says who may call it, or the app does not start.
  const routeAccess = declareRouteAccess(app);
  methodNotAllowed(app);

  // JSON only, and only where a route takes a body (routes/reports.ts): anything else is a 415.
  app.removeAllContentTypeParsers();

  const outlets = new Outlets(logger);
  const engine = new Engine({
    ttlSeconds: config.ttlSeconds,
    dropAfterSeconds: config.dropAfterSeconds,
    detect: { isIllumioChain: compileChainPatterns(config.illumioChainPatterns) },
    ...(config.homeCluster === undefined ? {} : { homeCluster: config.homeCluster }),
    ...(config.noAgentGraceSeconds === undefined ? {} : { noAgentGraceSeconds: config.noAgentGraceSeconds }),
    ...(config.driftGraceSeconds === undefined ? {} : { driftGraceSeconds: config.driftGraceSeconds }),
    ...(options.now ? { now: options.now } : {}),
    // Findings change here and fan out to the outlets (publish/): the alert log, the metrics,
    // the report object, the Events, the values ConfigMap.
    onTransition: (transition) => outlets.transition(transition),
  });
  app.decorate('engine', engine);
  // Gauges read the engine and the view at scrape time.
  const metrics = new Metrics({
    nodes: () => engine.counts(),
    findings: () => engine.book.counts(),
    clusterView: () => clusterViewStatus(),
    readiness: () => checks.readiness(),
    kubeRequests: () => ('api' in access ? access.api.requests : new Map()),
  });

  const access = options.cluster ?? { off: 'no cluster configured' };
  const illumioConfig = config.illumio ?? loadConfig({}).illumio;
  const [rootNamespace, rootName] = illumioConfig.rootCaConfigMap.split('/') as [string, string];
  const checks = new IllumioChecks({
    engine,
    ...('api' in access ? { api: access.api } : {}),
    rootCa: { namespace: rootNamespace, name: rootName },
    ...(illumioConfig.pce ? { pce: illumioConfig.pce } : {}),
    ...(illumioConfig.policy ? { policy: illumioConfig.policy } : {}),
    ...(illumioConfig.workloads !== undefined ? { workloads: illumioConfig.workloads } : {}),
    expiringDays: illumioConfig.rootCaExpiryWarningDays,
    intervalMs: illumioConfig.checkIntervalSeconds * 1000,
    log: logger,
    ...(options.now ? { now: options.now } : {}),
  });
  if (options.sweep !== false) {
    app.addHook('onReady', async () => checks.start());
    app.addHook('onClose', async () => checks.stop());
  }
  // Objects that replace what an earlier aggregator wrote wait until this one knows as much: the
  // view listed and the agents' first reports in (NODE_NO_AGENT's grace, one report interval).
  const clock = options.now ?? Date.now;
  const startedAt = clock();
  const warmupMs = (config.noAgentGraceSeconds ?? config.ttlSeconds) * 1000;
  outlets.add(
    ...outletsFor({
      log: logger,
      metrics: metrics.publish,
      engine,
      checks,
      api: 'api' in access ? access.api : undefined,
      config: config.publish ?? loadConfig({}).publish,
      tuning: options.publish ?? {},
      ready: () => clusterViewStatus().state !== 'syncing' && clock() - startedAt >= warmupMs,
      ...(options.now ? { now: options.now } : {}),
    }),
  );
  app.decorate('outlets', outlets.names);
  if (options.sweep !== false) {
    app.addHook('onReady', async () => outlets.start());
    app.addHook('onClose', async () => outlets.stop());
  }
  let view: ClusterView | undefined;
  if ('api' in access) {
    const illumio = illumioConfig;
    view = new ClusterView(
      access.api,
      {
        homeCluster: config.homeCluster ?? '',
        ...(config.agentServiceAccount ? { agentServiceAccount: config.agentServiceAccount } : {}),
        cvenNamespace: illumio.cvenNamespace,
        cvenDaemonSet: illumio.cvenDaemonSet,
        kubelinkDeployment: illumio.kubelinkDeployment,
        rootCaConfigMap: illumio.rootCaConfigMap,
        calicoConfigMaps: config.calicoConfigMaps ?? ['calico-config'],
      },
      logger,
      () => {
        const facts = view!.facts();
        engine.setClusterFacts(facts);
        checks.onFacts(facts);
      },
      (resource, state) => metrics.viewResource(resource, state),
    );
    app.addHook('onReady', async () => view!.start());
    app.addHook('onClose', async () => {
      await view!.stop();
      await access.api.close();
    });
  }
  const clusterViewStatus = (): ClusterViewStatus => (view ? view.status() : { state: 'off', reason: 'off' in access ? access.off : 'off' });
  app.decorate('clusterView', { status: clusterViewStatus });

  app.setErrorHandler(makeErrorHandler());
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(errorBody({ statusCode: 404, message: `no route ${request.method} ${request.url.split('?')[0]}`, reason: 'other' })),
  );
  app.addHook('onResponse', async (request, reply) => {
    if (logger.isLevelEnabled('debug')) {
      request.log.debug({ method: request.method, url: request.url, statusCode: reply.statusCode, ms: reply.elapsedTime }, 'request completed');
    }
  });

  let shuttingDown = false;
  app.addHook('preClose', async () => {
    shuttingDown = true;
  });
  if (options.sweep !== false) {
    const timer = setInterval(() => engine.sweep(), sweepIntervalMs(config.ttlSeconds));
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  }

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'nodeprep aggregator', description: 'Node reports in; machine-ID and Calico/Illumio findings out.', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
    // The report body is already JSON Schema (generated from the zod NodeReport); the rest is zod.
    transform: (document) => {
      const body = document.schema?.body;
      if (body === undefined || body instanceof ZodType) return jsonSchemaTransform(document);
      const transformed = jsonSchemaTransform({ ...document, schema: { ...document.schema, body: undefined } });
      return { ...transformed, schema: { ...transformed.schema, body } };
    },
  });
  // Who may send and who may read (access/): ServiceAccount tokens reviewed by the API server
  // when there is one to ask, shared tokens bound to clusters otherwise or besides.
  const reviews =
    'api' in access
      ? new Reviews(access.api, (config.reviewCacheSeconds ?? 300) * 1000, {
          asked: (kind) => metrics.reviews.inc({ kind, answer: 'asked' }),
          cached: (kind) => metrics.reviews.inc({ kind, answer: 'cached' }),
        })
      : undefined;
  const refusals = new RefusalLog(logger);
  refusals.start();
  app.addHook('onClose', async () => refusals.stop());
  const senders = new SenderPolicy({
    ...(options.shared ? { shared: options.shared } : {}),
    ...(reviews ? { reviews } : {}),
    ...(config.agentServiceAccount ? { agentServiceAccount: config.agentServiceAccount } : {}),
    audience: config.agentTokenAudience ?? 'nodeprep',
    homeCluster: config.homeCluster ?? '',
  });
  const readers = new ReaderPolicy(reviews);
  app.decorate('access', { senders: senders.enabled, readers: readers.enabled, routes: routeAccess });
  documentAccess(app, { agent: senders.enabled, reader: readers.enabled });
  app.decorateRequest('sender', undefined);
  // On every route, deciding from the route the router matched (access/routes.ts).
  const hooks = accessHooks({ senders, readers, log: refusals, readRefused: (reason) => metrics.readsRejected.inc({ reason }), agentTurnedAway: () => engine.agentTurnedAway() });
  app.addHook('onRequest', hooks.onRequest);
  app.addHook('preHandler', hooks.preHandler);
  await app.register(reportRoutes, { engine, metrics, bodyLimit: BODY_LIMIT });
  await app.register(nodeRoutes, { engine });
  await app.register(findingRoutes, { engine });
  await app.register(illumioRoutes, { checks });
  await app.register(operationRoutes, { metrics, isShuttingDown: () => shuttingDown, clusterView: clusterViewStatus });
  return app;
}
