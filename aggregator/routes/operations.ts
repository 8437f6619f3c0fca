// Probes, metrics and the API description.
import type { FastifyPluginAsync } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ApiError, Health, type ClusterViewStatus } from '../../protocol/api.js';
import type { Metrics } from '../metrics.js';

export interface OperationRouteOptions {
  metrics: Metrics;
  isShuttingDown: () => boolean;
  clusterView: () => ClusterViewStatus;
}

export const operationRoutes: FastifyPluginAsync<OperationRouteOptions> = async (app, { metrics, isShuttingDown, clusterView }) => {
  app.setValidatorCompiler(validatorCompiler);
  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.get('/healthz', { config: { access: 'open' }, schema: { summary: 'Liveness: the process answers', response: { 200: Health } } }, async () => ({ status: 'ok' as const }));

  // Ready as soon as the app is built (state is soft: a fresh aggregator is whole again after one
  // report interval); not ready while shutting down, so the Service stops sending reports here.
  // The cluster view's state is detail: reports are taken whether or not the API answers.
  typed.get('/readyz', { config: { access: 'open' }, schema: { summary: 'Readiness, with the cluster view\'s state', response: { 200: Health, 503: Health } } }, async (_request, reply) =>
    isShuttingDown() ? reply.code(503).send({ status: 'shutting down', clusterView: clusterView() }) : reply.send({ status: 'ready', clusterView: clusterView() }),
  );

  // The Prometheus text exposition format, as the published contract says (prom-client's
  // content type is "text/plain; version=0.0.4; charset=utf-8").
  typed.get('/metrics', {
    config: { access: 'reader' },
    schema: { summary: 'Prometheus metrics, in the Prometheus text format', response: { 200: { content: { 'text/plain': { schema: z.string() } } } } },
  }, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).serializer((payload: unknown) => payload as string).send(text);
  });

  typed.get('/openapi.json', { config: { access: 'open' }, schema: { hide: true, response: { 200: z.record(z.string(), z.unknown()), 500: ApiError } } }, async () => app.swagger() as unknown as Record<string, unknown>);
};
