// GET /v1/findings?severity=&code=&node= (design.md section 5).
import type { FastifyPluginAsync } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { ApiError, FindingList, FindingQuery } from '../../protocol/api.js';
import type { Engine } from '../engine.js';

export const findingRoutes: FastifyPluginAsync<{ engine: Engine }> = async (app, { engine }) => {
  app.setValidatorCompiler(validatorCompiler);
  app.withTypeProvider<ZodTypeProvider>().get('/v1/findings', {
    config: { access: 'reader' },
    schema: {
      summary: 'Active findings, most severe first, a page at a time; with the node counts',
      querystring: FindingQuery,
      response: { 200: FindingList, 400: ApiError },
    },
  }, async (request) => ({ ...engine.listFindings(request.query), nodes: engine.counts() }));
};
