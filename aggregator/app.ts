// Builds the aggregator (fastify/demo layout): plugins, then routes. Tests import this and use
// app.inject(); main.ts starts it.
import fastifySwagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, serializerCompiler } from 'fastify-type-provider-zod';
import { ZodType } from 'zod';
import { pino, type Logger } from 'pino';
import { MAX_REPORT_BYTES } from '../protocol/report.js';
import { logTransition } from './alerts.js';
import { TokenCheck } from './auth.js';
import { sweepIntervalMs, type Config } from './config.js';
import { compileChainPatterns } from './detect/illumio.js';
import { errorBody, makeErrorHandler } from './errors.js';
import { Metrics } from './metrics.js';
import { findingRoutes } from './routes/findings.js';
import { nodeRoutes } from './routes/nodes.js';
import { operationRoutes } from './routes/operations.js';
import { reportRoutes } from './routes/reports.js';
import { NodeStore } from './store.js';

// Room for HTTP framing slack over the largest report the schema admits (MAX_REPORT_BYTES).
export const BODY_LIMIT = MAX_REPORT_BYTES + 16 * 1024;

declare module 'fastify' {
  interface FastifyRequest {
    rawBody: string | undefined;
  }
  interface FastifyInstance {
    nodeStore: NodeStore;
  }
}

export type AppConfig = Pick<Config, 'ttlSeconds' | 'dropAfterSeconds' | 'logLevel' | 'illumioChainPatterns'>;

export interface AppOptions {
  config: AppConfig;
  // The bearer token agents must send; none means POST /v1/reports is open.
  token?: TokenCheck;
  // A pino logger to use instead of one on stdout (tests capture logs this way).
  logger?: Logger;
  // The clock, for tests; and whether to sweep for stale nodes on a timer (tests call sweep()).
  now?: () => number;
  sweep?: boolean;
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
  const token = options.token ?? new TokenCheck();
  const logger = options.logger ?? createLogger(config.logLevel);

  const app = Fastify({
    loggerInstance: logger,
    // Steady state must log nothing per report: requests are logged at debug by the hook below.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    // For the one route ajv validates (POST /v1/reports): reject, never repair. Fastify's
    // defaults would drop unknown fields and coerce "1" to 1.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false } },
  }) as unknown as FastifyInstance;
  // Zod validates in each route plugin (see routes/); zod serialises every response.
  app.setSerializerCompiler(serializerCompiler);

  // Keep the body text: the store keeps the report compressed as received, and re-serialising
  // the parsed object would cost as much as parsing it.
  app.decorateRequest('rawBody', undefined);
  // JSON only: anything else (fastify also parses text/plain by default) is a 415.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    try {
      const parsed: unknown = JSON.parse(body as string);
      request.rawBody = body as string;
      done(null, parsed);
    } catch (error) {
      const invalid = Object.assign(new Error(`body is not valid JSON: ${(error as Error).message}`), {
        statusCode: 400,
        code: 'FST_ERR_CTP_INVALID_JSON_BODY',
      });
      done(invalid, undefined);
    }
  });

  // Gauges read the store at scrape time; the store reports transitions to the metrics.
  const metrics: Metrics = new Metrics({ known: () => store.knownNodes, stale: () => store.staleNodeCount });
  const store = new NodeStore({
    ttlSeconds: config.ttlSeconds,
    dropAfterSeconds: config.dropAfterSeconds,
    detect: { isIllumioChain: compileChainPatterns(config.illumioChainPatterns) },
    ...(options.now ? { now: options.now } : {}),
    onTransition: (transition) => {
      logTransition(app.log as Logger, transition);
      metrics.onTransition(transition);
    },
  });
  app.decorate('nodeStore', store);

  app.setErrorHandler(makeErrorHandler((reason) => metrics.reportsRejected.inc({ reason })));
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
    const timer = setInterval(() => store.sweep(), sweepIntervalMs(config.ttlSeconds));
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
  await app.register(reportRoutes, { store, metrics, token, bodyLimit: BODY_LIMIT });
  await app.register(nodeRoutes, { store });
  await app.register(findingRoutes, { store });
  await app.register(operationRoutes, { metrics, isShuttingDown: () => shuttingDown });
  return app;
}
