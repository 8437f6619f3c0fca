// POST /v1/reports (design.md section 5).
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { ApiError, ReportAccepted } from '../../protocol/api.js';
import { SCHEMA_VERSION, type NodeReport } from '../../protocol/report.js';
import { nodeKey } from '../detect/finding.js';
import { HttpError, makeErrorHandler } from '../errors.js';
import { reportJsonSchema, reportTotalsIssues } from '../report-validation.js';
import type { senderHooks } from '../access/hooks.js';
import type { Metrics } from '../metrics.js';
import type { Engine } from '../engine.js';

export interface ReportRouteOptions {
  engine: Engine;
  metrics: Metrics;
  // Who may send which report (access/): before the body is read, then for its node and cluster.
  access: ReturnType<typeof senderHooks>;
  bodyLimit: number;
}

export const REPORTS_URL = '/v1/reports';

// This plugin sets no validator compiler, so the body schema (JSON Schema generated from the zod
// NodeReport, see report-validation.ts) is compiled by fastify's ajv; responses use zod.
export const reportRoutes: FastifyPluginAsync<ReportRouteOptions> = async (app, { engine, metrics, access, bodyLimit }) => {
  const bodySchema = reportJsonSchema();
  // Encapsulated to this plugin: every refusal of a report, from the token check to the body
  // limit, is counted by reason; other routes' errors are not.
  app.setErrorHandler(makeErrorHandler((reason) => metrics.reportsRejected.inc({ reason })));
  app.withTypeProvider<ZodTypeProvider>().post(
    REPORTS_URL,
    {
      bodyLimit,
      schema: {
        summary: 'Submit a NodeReport (sent by the nodeprep agent)',
        body: bodySchema,
        response: { 202: ReportAccepted, 400: ApiError, 401: ApiError, 403: ApiError, 413: ApiError, 415: ApiError },
        security: [{ bearer: [] }],
      },
      // Before the body is read, so a client without a valid token costs no parsing.
      onRequest: access.onRequest,
      // After validation: the sender may speak only for its own node and cluster.
      preHandler: access.preHandler,
      // A report another schema version fails validation somewhere; say why instead of where.
      preValidation: (request, _reply, done) => {
        const version = (request.body as { schemaVersion?: unknown } | null)?.schemaVersion;
        if (typeof version === 'number' && version !== SCHEMA_VERSION) {
          const issues = [{ path: 'schemaVersion', message: `unsupported schema version ${version}; this aggregator understands ${SCHEMA_VERSION}` }];
          const hint = version > SCHEMA_VERSION ? ': upgrade the aggregator before the agents' : '';
          done(new HttpError(400, `body.schemaVersion: unsupported schema version ${version} (supported: ${SCHEMA_VERSION})${hint}`, 'schema_version', issues));
          return;
        }
        done();
      },
    },
    async (request, reply) => {
      const report = request.body as NodeReport;
      const issues = reportTotalsIssues(report);
      if (issues.length > 0) throw new HttpError(400, `body.${issues[0]!.path}: ${issues[0]!.message}`, 'invalid_report', issues);
      const findings = engine.ingest(report, request.rawBody ?? JSON.stringify(report));
      metrics.reportsReceived.inc();
      // Up to the answer being ready; writing it to the socket is not ingest.
      metrics.ingestSeconds.observe(reply.elapsedTime / 1000);
      return reply.code(202).send({ node: nodeKey(report), findings });
    },
  );
};
