// Shapes of the aggregator's HTTP API (design.md section 5), shared by the routes, the
// OpenAPI document and the clients (the agent, the tests).
import { z } from 'zod';
import { Finding, FindingCode, Severity } from './findings.js';
import { NodeReport } from './report.js';

export const ReportAccepted = z.object({
  node: z.string(),
  // The active findings that concern this node, its own and the cluster-wide ones it is part of
  // (in those, `nodes` holds at most REPORT_RESPONSE_NODES names; evidence.nodeCount is the total).
  findings: z.array(Finding),
});
export type ReportAccepted = z.infer<typeof ReportAccepted>;
export const REPORT_RESPONSE_NODES = 20;

export const NodeName = z.object({ name: z.string().min(1).max(253) });

export const NodeSummary = z.object({
  name: z.string(),
  cluster: z.string().optional(),
  lastSeen: z.iso.datetime(),
  stale: z.boolean(),
  // The value of /etc/machine-id when it is a valid ID.
  machineId: z.string().optional(),
  // insert | append when every Calico-hooked chain of the node agrees; absent otherwise.
  calicoMode: z.enum(['insert', 'append']).optional(),
  findings: z.number().int(),
});
export type NodeSummary = z.infer<typeof NodeSummary>;

export const NodeList = z.object({ nodes: z.array(NodeSummary) });
export type NodeList = z.infer<typeof NodeList>;

export const NodeDetail = NodeSummary.extend({
  report: NodeReport,
  activeFindings: z.array(Finding),
});
export type NodeDetail = z.infer<typeof NodeDetail>;

export const FindingQuery = z.strictObject({
  severity: Severity.optional(),
  code: FindingCode.optional(),
  node: z.string().max(253).optional(),
});
export type FindingQuery = z.infer<typeof FindingQuery>;

export const FindingList = z.object({ findings: z.array(Finding) });
export type FindingList = z.infer<typeof FindingList>;

export const Health = z.object({ status: z.enum(['ok', 'ready', 'shutting down']) });
export type Health = z.infer<typeof Health>;

export const ApiError = z.object({
  statusCode: z.number().int(),
  error: z.string(),
  message: z.string(),
  // For 400: every problem found, each with the path of the offending field (e.g. `node.name`).
  issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});
export type ApiError = z.infer<typeof ApiError>;
