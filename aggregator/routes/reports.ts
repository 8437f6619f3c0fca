// POST /v1/reports (design.md section 5).
//
// Most reports are heartbeats: the node's facts again, with a new collectedAt. One is known by
// its bytes (reports/fingerprint.ts) before it is parsed, and costs a hash and a lookup: its
// bytes are those of a report that was parsed, validated and analysed, and collectedAt is checked
// on its own. Any other report is parsed, validated against NodeReport's JSON Schema (ajv) and
// analysed.
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { ApiError, ReportAccepted } from '../../protocol/api.js';
import { LIMITS } from '../../protocol/limits.js';
import { CollectedAt, SCHEMA_VERSION, type NodeReport } from '../../protocol/report.js';
import { nodeKey } from '../detect/finding.js';
import { HttpError, makeErrorHandler } from '../errors.js';
import { compileReportValidator, reportJsonSchema, reportTotalsIssues } from '../report-validation.js';
import { fingerprintOf } from '../reports/fingerprint.js';
import { REPORT_EXAMPLE } from './report-example.js';
import type { Metrics } from '../metrics.js';
import type { Engine } from '../engine.js';

export interface ReportRouteOptions {
  engine: Engine;
  metrics: Metrics;
  bodyLimit: number;
}

export const REPORTS_URL = '/v1/reports';

/** The body of a heartbeat: which node's live report it repeats, and when it was collected. */
class Heartbeat {
  constructor(
    readonly node: { name: string; cluster?: string },
    readonly collectedAt: string,
  ) {}
}

declare module 'fastify' {
  interface FastifyRequest {
    // The report as sent, and its fingerprint: the store keeps the text, compressed.
    rawBody: string | undefined;
    fingerprint: string | undefined;
  }
}

export const reportRoutes: FastifyPluginAsync<ReportRouteOptions> = async (app, { engine, metrics, bodyLimit }) => {
  // Encapsulated to this plugin: every refusal of a report, from the token check to the body
  // limit, is counted by reason; other routes' errors are not.
  app.setErrorHandler(makeErrorHandler((reason) => metrics.reportsRejected.inc({ reason })));

  app.decorateRequest('rawBody', undefined);
  app.decorateRequest('fingerprint', undefined);
  // JSON only (app.ts removes fastify's other parsers: anything else is a 415).
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const raw = body as string;
    const { digest, collectedAt } = fingerprintOf(raw);
    request.rawBody = raw;
    request.fingerprint = digest;
    const repeated = engine.repeatOf(digest);
    if (repeated && collectedAt !== undefined && CollectedAt.safeParse(collectedAt).success) {
      done(null, new Heartbeat({ name: repeated.name, ...(repeated.cluster === '' ? {} : { cluster: repeated.cluster }) }, collectedAt));
      return;
    }
    try {
      done(null, JSON.parse(raw));
    } catch (error) {
      const invalid = Object.assign(new Error(`body is not valid JSON: ${(error as Error).message}`), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' });
      done(invalid, undefined);
    }
  });

  // The schema stays on the route for the API description; this validates what it says.
  const validate = compileReportValidator();
  app.setValidatorCompiler(() => (body: unknown) => {
    if (body instanceof Heartbeat) return { value: body };
    const errors = validate(body);
    return errors ? { error: errors } : { value: body };
  });

  app.withTypeProvider<ZodTypeProvider>().post(
    REPORTS_URL,
    {
      bodyLimit,
      // Who may send which report (access/): the token before the body is read, then the
      // report's node and cluster.
      config: { access: 'agent' },
      schema: {
        summary: 'Submit a NodeReport (sent by the nodeprep agent)',
        body: {
          ...reportJsonSchema(),
          // What JSON Schema cannot say (report-validation.ts): a 400 names the field all the same.
          description: `Totals across the whole report, refused with 400 beyond them: ${LIMITS.rulesPerReport} built-in chain rules, ${LIMITS.userChainNamesPerReport} user chain names, ${LIMITS.nftBaseChainsPerReport} nft base chains; and ${LIMITS.userChainFamilies} chain families in a table.`,
          examples: [REPORT_EXAMPLE],
        },
        // 401, 403 and 503, and the bearer token, where senders are checked (contract.ts).
        response: { 202: ReportAccepted, 400: ApiError, 413: ApiError, 415: ApiError },
      },
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
      const body = request.body as NodeReport | Heartbeat;
      const findings = body instanceof Heartbeat ? heartbeat(engine, request, body) : ingest(engine, request, body);
      metrics.reportsReceived.inc();
      // Up to the answer being ready; writing it to the socket is not ingest.
      metrics.ingestSeconds.observe(reply.elapsedTime / 1000);
      return reply.code(202).send({ node: nodeKey(body), findings });
    },
  );
};

function ingest(engine: Engine, request: FastifyRequest, report: NodeReport) {
  const issues = reportTotalsIssues(report);
  if (issues.length > 0) throw new HttpError(400, `body.${issues[0]!.path}: ${issues[0]!.message}`, 'invalid_report', issues);
  return engine.ingest(report, request.rawBody!, request.fingerprint);
}

function heartbeat(engine: Engine, request: FastifyRequest, beat: Heartbeat) {
  // The node went stale or sent other facts between the parser and here: then this is its
  // report in full, valid as the one it repeated (its bytes, and a valid collectedAt).
  return engine.heartbeat(request.fingerprint!, beat.collectedAt) ?? engine.ingest(JSON.parse(request.rawBody!) as NodeReport, request.rawBody!, request.fingerprint);
}
