// The one error handler (fastify/demo): every error becomes an ApiError body; 4xx say what was
// wrong (400 names the offending field), 5xx are logged and say nothing about internals.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiError } from '../protocol/api.js';
import { CLUSTER_NAME_RULE, DNS1123_LABEL, DNS1123_SUBDOMAIN, NODE_NAME_RULE } from '../protocol/names.js';
import { BUILTIN_WORD, PRINTABLE, PRINTABLE_RULE } from '../protocol/text.js';
import type { RejectReason } from './metrics.js';

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
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
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

// NodeReport's patterns (protocol/), said in words: a regex helps nobody.
const PATTERN_RULES = new Map<string, string>([
  [PRINTABLE.source, PRINTABLE_RULE],
  [BUILTIN_WORD.source, 'must be 1 to 16 uppercase letters'],
  [DNS1123_SUBDOMAIN.source, `must be ${NODE_NAME_RULE}`],
  [DNS1123_LABEL.source, `must be ${CLUSTER_NAME_RULE}`],
  ['^[0-9a-f]{32}$', 'must be 32 lowercase hex digits'],
  ['^[!-~]+$', 'must be printable ASCII'],
]);

function describe(keyword: string, message: string, params: Record<string, unknown>): string {
  // ajv says "must NOT have additional properties" of the parent; the path already names the key.
  if (keyword === 'additionalProperties') return 'unknown field';
  if (keyword === 'required') return 'required field is missing';
  // The other patterns in NodeReport are zod's ISO date-time regexes.
  if (keyword === 'pattern') return PATTERN_RULES.get(String(params.pattern)) ?? 'must be an ISO-8601 date-time in UTC, such as 2025-01-01T00:00:00Z';
  if (keyword === 'propertyNames') return 'has an invalid key';
  return message;
}

const MAX_ISSUES = 100;

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
    // Every problem (ajv's allErrors), up to MAX_ISSUES: a body of a quarter megabyte could
    // otherwise answer with megabytes of them. The message says how many there were.
    const issues = validation.slice(0, MAX_ISSUES).map((v) => {
      const key = (v as { propertyName?: string }).propertyName; // ajv: the key a propertyNames check refused
      return {
        path: fieldPath(v.instancePath, v.params as Record<string, unknown>) + (key === undefined ? '' : `.${key}`),
        message: describe(v.keyword, v.message ?? 'invalid', v.params as Record<string, unknown>),
      };
    });
    const first = issues[0]!;
    const others = validation.length - 1;
    const more = others > 0 ? ` (and ${others} more problem${others > 1 ? 's' : ''}${validation.length > MAX_ISSUES ? `, the first ${MAX_ISSUES} listed in issues` : ''})` : '';
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

/** The error handler; a route plugin that counts its rejections passes `onRejected`. */
export function makeErrorHandler(onRejected?: (reason: RejectReason) => void) {
  return function errorHandler(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
    const classified = classifyError(error);
    // A 503 of our own (the API server could not review a token) is said where it happens, once.
    if (classified.statusCode >= 500 && !(error instanceof HttpError)) {
      request.log.error({ err: error }, 'request failed');
    } else {
      // Not at info: a misconfigured agent would log a line per report.
      request.log.debug({ statusCode: classified.statusCode, reason: classified.reason, error: classified.message }, 'request rejected');
    }
    onRejected?.(classified.reason);
    return reply.code(classified.statusCode).send(errorBody(classified));
  };
}
