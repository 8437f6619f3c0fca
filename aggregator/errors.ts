// The one error handler (fastify/demo): every error becomes an ApiError body; 4xx say what was
// wrong (400 names the offending field), 5xx are logged and say nothing about internals.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiError } from '../protocol/api.js';
import type { RejectReason } from './metrics.js';

export const REPORTS_URL = '/v1/reports';

/** An error with a status and a reason the reports route counts rejections by. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly reason: RejectReason = 'other',
    readonly issues?: ApiError['issues'],
  ) {
    super(message);
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
};

/**
 * `iptables.0.tables.1.name` from a validation error's JSON pointer, plus the key itself for an
 * unknown or missing key (ajv: additionalProperty / missingProperty; zod: keys).
 */
function fieldPath(instancePath: string, params: Record<string, unknown>): string {
  const parts = instancePath.split('/').filter((p) => p !== '');
  const keys = Array.isArray(params.keys) ? (params.keys as unknown[]).map(String) : [];
  if (keys.length === 1) parts.push(keys[0]!);
  for (const key of ['additionalProperty', 'missingProperty']) if (typeof params[key] === 'string') parts.push(params[key]);
  return parts.length === 0 ? '(root)' : parts.join('.');
}

function describe(keyword: string, message: string): string {
  // ajv says "must NOT have additional properties" of the parent; the path already names the key.
  if (keyword === 'additionalProperties') return 'unknown field';
  if (keyword === 'required') return 'required field is missing';
  // The only patterns in NodeReport are zod's ISO date-time regex; its text helps nobody.
  if (keyword === 'pattern') return 'must be an ISO-8601 date-time in UTC, such as 2025-01-01T00:00:00Z';
  return message;
}

interface Classified {
  statusCode: number;
  message: string;
  reason: RejectReason;
  issues?: ApiError['issues'];
}

export function classifyError(error: FastifyError | HttpError | Error): Classified {
  if (error instanceof HttpError) {
    return { statusCode: error.statusCode, message: error.message, reason: error.reason, ...(error.issues ? { issues: error.issues } : {}) };
  }
  const validation = (error as FastifyError).validation;
  if (Array.isArray(validation) && validation.length > 0) {
    const context = (error as FastifyError).validationContext ?? 'body';
    const issues = validation.map((v) => ({
      path: fieldPath(v.instancePath, v.params as Record<string, unknown>),
      message: describe(v.keyword, v.message ?? 'invalid'),
    }));
    const first = issues[0]!;
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
    return { statusCode: 400, message: `${context}.${first.path}: ${first.message}${more}`, reason: 'invalid_report', issues };
  }
  const code = (error as FastifyError).code;
  switch (code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { statusCode: 400, message: error.message, reason: 'invalid_json' };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { statusCode: 413, message: error.message, reason: 'too_large' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { statusCode: 415, message: 'Content-Type must be application/json', reason: 'unsupported_media_type' };
  }
  const statusCode = (error as FastifyError).statusCode ?? 500;
  return statusCode >= 400 && statusCode < 500
    ? { statusCode, message: error.message, reason: 'other' }
    : { statusCode: 500, message: 'Internal Server Error', reason: 'other' };
}

export function errorBody(c: Classified): ApiError {
  return { statusCode: c.statusCode, error: STATUS_TEXT[c.statusCode] ?? 'Error', message: c.message, ...(c.issues ? { issues: c.issues } : {}) };
}

export function makeErrorHandler(onReportRejected: (reason: RejectReason) => void) {
  return function errorHandler(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
    const classified = classifyError(error);
    if (classified.statusCode >= 500) {
      request.log.error({ err: error }, 'request failed');
    } else {
      // Not at info: a misconfigured agent would log a line per report.
      request.log.debug({ statusCode: classified.statusCode, reason: classified.reason, error: classified.message }, 'request rejected');
    }
    if (request.routeOptions.url === REPORTS_URL) onReportRejected(classified.reason);
    return reply.code(classified.statusCode).send(errorBody(classified));
  };
}
