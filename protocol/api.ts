// Shapes of the aggregator's HTTP API (design.md section 5), shared by the routes, the
// OpenAPI document and the clients (the agent, the tests).
import { z } from 'zod';
import { Finding, FindingCode, Severity } from './findings.js';
import { NodeReport } from './report.js';

export const ReportAccepted = z.object({
  node: z.string(),
  // The active findings that concern this node, its own and the cluster-wide ones it is part of.
  findings: z.array(Finding),
});
export type ReportAccepted = z.infer<typeof ReportAccepted>;

// A node's key: "<cluster>/<name>", or "<name>" in the aggregator's own cluster when it has no
// name (protocol/names.ts: neither part can hold a "/").
export const NodeName = z.object({ name: z.string().min(1).max(63 + 1 + 253) });

export const NodeSummary = z.object({
  // The node's key (see NodeName).
  name: z.string(),
  cluster: z.string().optional(),
  // The Node object exists in the aggregator's cluster (cluster view on); false for nodes of
  // other clusters and when the view is off.
  inApi: z.boolean(),
  // A report arrived and is not stale.
  reporting: z.boolean(),
  lastSeen: z.iso.datetime().optional(),
  stale: z.boolean(),
  // The application-specific ID of /etc/machine-id when it is valid (protocol/machine-id.ts):
  // the agent's, or the kubelet's copy for a node without a live report (machineIdSource).
  machineId: z.string().optional(),
  machineIdSource: z.enum(['agent', 'kubelet']).optional(),
  // insert | append when every Calico-hooked chain of the node agrees; absent otherwise.
  calicoMode: z.enum(['insert', 'append']).optional(),
  findings: z.number().int(),
});
export type NodeSummary = z.infer<typeof NodeSummary>;

// Lists are paged as Kubernetes lists are: `limit` items at most, and an opaque `continue`
// token for the next page while there is one. Pages are in key order, so a walk sees every node
// that exists throughout it exactly once, whatever joins or leaves meanwhile.
//
// The token is a position in that order (base64url of the last key served), not a snapshot: it
// cannot expire, so there is no Kubernetes-style 410 Gone. Every token of the published form is a
// position and is served (a made-up one starts wherever it falls); a token of another form is a
// 400 naming `continue`, as Kubernetes answers a malformed one.
export const DEFAULT_PAGE = 500;
export const MAX_PAGE = 5000;
const Limit = z.coerce.number().int().min(1).max(MAX_PAGE).default(DEFAULT_PAGE);
export const CONTINUE_TOKEN = /^[A-Za-z0-9_-]*$/;
const Continue = z
  .string()
  .max(1024)
  .regex(CONTINUE_TOKEN, { error: 'must be the continue token of the previous page (base64url)' })
  .meta({ description: 'The previous page\'s `continue`, for the next page. A position in the list\'s order: it never expires.' })
  .optional();

export const NodeQuery = z.strictObject({
  limit: Limit,
  continue: Continue,
  cluster: z.string().max(63).optional(),
  // Only nodes concerned by an active finding of this code.
  code: FindingCode.optional(),
});
export type NodeQuery = z.infer<typeof NodeQuery>;

export const NodeList = z.object({
  nodes: z.array(NodeSummary),
  continue: z.string().optional(),
});
export type NodeList = z.infer<typeof NodeList>;

// Nodes known, reporting, and in the cluster, for /v1/findings and the metrics.
export const NodeCounts = z.object({
  known: z.number().int(), // with a report, stale ones included, or in the API
  reporting: z.number().int(), // with a live report
  stale: z.number().int(),
  // The cluster view's: Nodes in the API and how many of them report (absent when it is off).
  inApi: z.number().int().optional(),
  inApiReporting: z.number().int().optional(),
});
export type NodeCounts = z.infer<typeof NodeCounts>;

export const NodeDetail = NodeSummary.extend({
  // The latest report; absent for a node known only from the Kubernetes API.
  report: NodeReport.optional(),
  activeFindings: z.array(Finding),
});
export type NodeDetail = z.infer<typeof NodeDetail>;

export const FindingQuery = z.strictObject({
  severity: Severity.optional(),
  code: FindingCode.optional(),
  node: z.string().max(63 + 1 + 253).optional(),
  limit: Limit,
  continue: Continue,
});
export type FindingQuery = z.infer<typeof FindingQuery>;

export const FindingList = z.object({
  findings: z.array(Finding),
  continue: z.string().optional(),
  nodes: NodeCounts,
});
export type FindingList = z.infer<typeof FindingList>;

export const ClusterViewStatus = z.object({
  // off: no cluster to read (the reason says why); syncing: listing; synced: watching
  // everything; degraded: a watch is lost or forbidden (resources says which), the rest works.
  state: z.enum(['off', 'syncing', 'synced', 'degraded']),
  reason: z.string().optional(),
  resources: z.record(z.string(), z.string()).optional(),
});
export type ClusterViewStatus = z.infer<typeof ClusterViewStatus>;

export const Health = z.object({
  status: z.enum(['ok', 'ready', 'shutting down']),
  clusterView: ClusterViewStatus.optional(),
});
export type Health = z.infer<typeof Health>;

export const ApiError = z.object({
  statusCode: z.number().int(),
  error: z.string(),
  message: z.string(),
  // For 400: every problem found, each with the path of the offending field (e.g. `node.name`).
  issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});
export type ApiError = z.infer<typeof ApiError>;
