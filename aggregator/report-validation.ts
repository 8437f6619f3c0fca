// Validation of incoming reports. The schema is protocol/report.ts's zod NodeReport, converted
// to JSON Schema and compiled by ajv: the zod runtime costs ~150 us per busy-node report, more
// than parsing it, and would halve the ingest rate (design.md section 8 asks for at least half a
// bare route's). What JSON Schema cannot say, the report-wide totals, is checked after it by the
// same function NodeReport's superRefine calls.
import { Ajv, type ErrorObject } from 'ajv';
import { z } from 'zod';
import { NodeReport, reportTotalsIssues as totals } from '../protocol/report.js';

/** NodeReport as JSON Schema (draft-07, what ajv speaks by default), for validation and docs. */
export function reportJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(NodeReport, { target: 'draft-7', io: 'input' }) as Record<string, unknown>;
  delete schema.$schema;
  return schema;
}

/** A validator of report bodies: the problems it found, or undefined for a valid report. */
export type ReportValidator = (body: unknown) => ErrorObject[] | undefined;

export function compileReportValidator(): ReportValidator {
  const ajv = new Ajv({
    // Reject, never repair: no dropping unknown fields, no "1" for 1, no defaults filled in.
    removeAdditional: false,
    coerceTypes: false,
    useDefaults: false,
    // Every problem: an agent's bad report is fixed in one go (errors.ts lists the first 100).
    allErrors: true,
    // maxLength counts UTF-16 code units, as zod's .max() and protocol/limits.ts do; ajv's default
    // counts code points, one character at a time, which is both slower and another limit.
    unicode: false,
    // zod writes each date-time as a pattern beside its format: the pattern is the check.
    validateFormats: false,
    // ajv says "unicode" is deprecated, on every start; the option is what it is, said above.
    logger: false,
  });
  const validate = ajv.compile(reportJsonSchema());
  return (body) => (validate(body) ? undefined : (validate.errors ?? []));
}

export interface ReportIssue {
  path: string;
  message: string;
}

/** The report-wide limits (protocol/report.ts reportTotalsIssues), with dotted paths. */
export function reportTotalsIssues(report: NodeReport): ReportIssue[] {
  return totals(report).map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
}
