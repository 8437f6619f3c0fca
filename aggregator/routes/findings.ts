// GET /v1/findings?severity=&code=&node= (design.md section 5).
import type { FastifyPluginAsync } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { ApiError, FindingList, FindingQuery } from '../../protocol/api.js';
import type { NodeStore } from '../store.js';

export const findingRoutes: FastifyPluginAsync<{ store: NodeStore }> = async (app, { store }) => {
  app.setValidatorCompiler(validatorCompiler);
  app.withTypeProvider<ZodTypeProvider>().get('/v1/findings', {
    schema: {
      summary: 'Active findings, most severe first',
      querystring: FindingQuery,
      response: { 200: FindingList, 400: ApiError },
    },
  }, async (request) => ({ findings: store.listFindings(request.query) }));
};
