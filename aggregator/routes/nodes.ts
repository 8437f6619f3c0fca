// GET /v1/nodes and GET /v1/nodes/:name (design.md section 5).
import type { FastifyPluginAsync } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { ApiError, NodeDetail, NodeList, NodeName } from '../../protocol/api.js';
import { HttpError } from '../errors.js';
import type { NodeStore } from '../store.js';

export const nodeRoutes: FastifyPluginAsync<{ store: NodeStore }> = async (app, { store }) => {
  app.setValidatorCompiler(validatorCompiler);
  const typed = app.withTypeProvider<ZodTypeProvider>();
  typed.get('/v1/nodes', {
    schema: { summary: 'Every known node, least recently seen first', response: { 200: NodeList } },
  }, async () => ({ nodes: store.listNodes() }));

  typed.get('/v1/nodes/:name', {
    schema: { summary: "A node's latest report and its active findings", params: NodeName, response: { 200: NodeDetail, 400: ApiError, 404: ApiError } },
  }, async (request) => {
    const node = store.getNode(request.params.name);
    if (!node) throw new HttpError(404, `no report from node ${request.params.name}`);
    return node;
  });
};
