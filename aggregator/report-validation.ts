// Validation of incoming reports. The schema is protocol/report.ts's zod NodeReport, converted
// to JSON Schema and compiled by fastify's own validator (ajv): the zod runtime costs ~150 us per
// busy-node report, more than parsing it, and would halve the ingest rate (design.md section 8
// asks for at least half a bare route's). What JSON Schema cannot say, the report-wide totals,
// is checked after it by the same function NodeReport's superRefine calls.
import { z } from 'zod';
import { NodeReport, reportTotalsIssues as totals } from '../protocol/report.js';

/** NodeReport as JSON Schema (draft-07, what fastify's ajv speaks), for validation and docs. */
export function reportJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(NodeReport, { target: 'draft-7', io: 'input' }) as Record<string, unknown>;
  delete schema.$schema;
  return schema;
}

export interface ReportIssue {
  path: string;
  message: string;
}

/** The report-wide limits (protocol/report.ts reportTotalsIssues), with dotted paths. */
export function reportTotalsIssues(report: NodeReport): ReportIssue[] {
  return totals(report).map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
}
