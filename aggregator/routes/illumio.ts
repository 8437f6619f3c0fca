// The admin's question, answered: GET /v1/readiness (the guide's four steps), GET
// /v1/illumio/sizing and GET /v1/illumio/values.yaml (design.md section 9).
import type { FastifyPluginAsync } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { IllumioSizing, Readiness } from '../../protocol/illumio.js';
import type { IllumioChecks } from '../illumio/checks.js';

export const illumioRoutes: FastifyPluginAsync<{ checks: IllumioChecks }> = async (app, { checks }) => {
  app.setValidatorCompiler(validatorCompiler);
  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.get('/v1/readiness', {
    config: { access: 'reader' },
    schema: { summary: 'May C-VEN be installed now? The guide\'s four steps, each ready, not-ready or unknown, with the deciding findings', response: { 200: Readiness } },
  }, async () => checks.readiness());
  typed.get('/v1/illumio/sizing', {
    config: { access: 'reader' },
    schema: { summary: 'The resource tier for C-VEN, Kubelink and Storage, each input with its value, source and tier', response: { 200: IllumioSizing } },
  }, async () => checks.sizing());
  // Documented as what the YAML holds, a mapping (a client parses it as one); sent as the text,
  // so the route is not typed by the schema.
  app.get('/v1/illumio/values.yaml', {
    config: { access: 'reader' },
    schema: { summary: 'The resources block to paste into illumio-values.yaml (YAML: a mapping, with comments)', response: { 200: { content: { 'text/yaml': { schema: z.record(z.string(), z.unknown()) } } } } },
  }, async (_request, reply) => reply.type('text/yaml; charset=utf-8').serializer((payload: unknown) => payload as string).send(checks.valuesYaml()));
};
