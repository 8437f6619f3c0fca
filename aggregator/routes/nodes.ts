// GET /v1/nodes and GET /v1/nodes/:name (design.md section 5).
import type { FastifyPluginAsync } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { ApiError, NodeDetail, NodeList, NodeName, NodeQuery } from '../../protocol/api.js';
import type { Engine } from '../engine.js';
import { HttpError } from '../errors.js';

export const nodeRoutes: FastifyPluginAsync<{ engine: Engine }> = async (app, { engine }) => {
  app.setValidatorCompiler(validatorCompiler);
  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.get('/v1/nodes', {
    config: { access: 'reader' },
    schema: {
      summary: 'Nodes that report or are in the cluster, in key order, a page at a time',
      querystring: NodeQuery,
      response: { 200: NodeList, 400: ApiError },
    },
  }, async (request) => engine.listNodes(request.query));

  typed.get('/v1/nodes/:name', {
    config: { access: 'reader' },
    schema: { summary: "A node's latest report and its active findings", params: NodeName, response: { 200: NodeDetail, 400: ApiError, 404: ApiError } },
  }, async (request) => {
    const node = engine.getNode(request.params.name);
    if (!node) throw new HttpError(404, `no node ${request.params.name}: no report from it, and not in the cluster view`);
    return node;
  });
};
