// The report object (design.md section 10): what the aggregator knows, as the policy working
// group's report format that Policy Reporter, Kyverno's tooling and kubectl read. OpenReports
// ClusterReport (openreports.io/v1alpha1, openreports/reports-api v0.2.1), or the older
// ClusterPolicyReport (wgpolicyk8s.io/v1alpha2) where only that is served. Pure: readiness and
// findings in, the object out; cluster-report.ts writes it.
//
// Mapping (issue 21):
// - one result per guide step: policy = the step (machine-ids, root-ca, sizing, calico-append:
//   the names of GET /v1/readiness and of nodeprep_readiness_step), rule "readiness", result
//   pass when ready, fail when not ready, error when unknown (OpenReports: "could not be
//   evaluated"), message = the step's reason;
// - one result per active finding: policy = the step the code belongs to (server-ven for
//   ILLUMIO_SERVER_VEN, outside the steps), rule = the code, result fail/warn/pass and severity
//   critical/medium/info for critical/warning/info, resources = the Nodes (at most 100, as in the
//   HTTP API), properties = id, nodeCount, remediation;
// - bounded: at most maxResults results and maxBytes of them, most severe first; what is left
//   out is one "skip" result that says how many and where to read them all.
import { FINDING_NODES, type Finding, type FindingCode, type Severity } from '../../protocol/findings.js';
import type { Readiness, ReadinessStep, ReadinessStepName } from '../../protocol/illumio.js';
import { severityRank } from '../findings/book.js';
import { OTHER_BLOCKERS, READINESS_RULES, READINESS_STEPS } from '../illumio/readiness.js';

export const REPORT_NAME = 'nodeprep';
export const REPORT_SOURCE = 'nodeprep';

export type ReportApi = 'openreports.io/v1alpha1' | 'wgpolicyk8s.io/v1alpha2';

/** The two report kinds, in the order the aggregator prefers them. */
export const REPORT_KINDS: Record<ReportApi, { kind: string; plural: string }> = {
  'openreports.io/v1alpha1': { kind: 'ClusterReport', plural: 'clusterreports' },
  'wgpolicyk8s.io/v1alpha2': { kind: 'ClusterPolicyReport', plural: 'clusterpolicyreports' },
};

export interface ReportLimits {
  // Results in all, the four steps and the "left out" result included.
  maxResults: number;
  // Bytes of JSON the results may take together. The object's other fields are a few hundred
  // bytes, so the object stays well under etcd's 1.5 MiB whatever the cluster.
  maxBytes: number;
}

// 500 results of typical findings (one node each, about 1 KiB) fit in 512 KiB; findings that list
// 100 nodes take 5-30 KiB each, and the byte bound stops them first.
export const DEFAULT_REPORT_LIMITS: ReportLimits = { maxResults: 500, maxBytes: 512 * 1024 };

// Long texts are cut: a message or a remediation is a few lines for an admin, never a payload.
const MAX_TEXT = 1024;
const MAX_IDS = 512;

export type ResultStatus = 'pass' | 'fail' | 'warn' | 'error' | 'skip';

export interface ReportResult {
  source: string;
  policy: string;
  rule: string;
  category: string;
  result: ResultStatus;
  severity?: 'critical' | 'medium' | 'info';
  message: string;
  resources?: { apiVersion: 'v1'; kind: 'Node'; name: string }[];
  properties: Record<string, string>;
  timestamp?: { seconds: number; nanos: number };
}

export interface ReportObject {
  apiVersion: ReportApi;
  kind: string;
  metadata: { name: string; labels: Record<string, string> };
  // openreports.io only: ClusterPolicyReport has neither (the API server would prune them).
  source?: string;
  configuration?: { limits: { maxResults: number } };
  summary: Record<ResultStatus, number>;
  results: ReportResult[];
}

export interface ReportInput {
  api: ReportApi;
  readiness: Readiness;
  // This cluster's active findings, most important first (engine.book.all()'s order).
  findings: readonly Finding[];
  // The Node name of a finding's node key, undefined for a node of another cluster.
  nodeName: (key: string) => string | undefined;
  limits?: ReportLimits;
}

export interface BuiltReport {
  object: ReportObject;
  // Findings listed, and findings left out by the bounds.
  listed: number;
  leftOut: number;
}

const SEVERITY: Record<Severity, { result: ResultStatus; severity: 'critical' | 'medium' | 'info' }> = {
  critical: { result: 'fail', severity: 'critical' },
  warning: { result: 'warn', severity: 'medium' },
  info: { result: 'pass', severity: 'info' },
};

const STEP_RESULT: Record<ReadinessStep['state'], ResultStatus> = { ready: 'pass', 'not-ready': 'fail', unknown: 'error' };

/** The guide step a finding code belongs to: the first step (in the guide's order) whose rules name it. */
export function policyOf(code: FindingCode): string {
  for (const step of READINESS_STEPS) {
    const rule = READINESS_RULES[step];
    if (rule.blocks.includes(code) || rule.leavesOpen.includes(code) || rule.qualifies.includes(code)) return step;
  }
  return OTHER_BLOCKERS.includes(code) ? 'server-ven' : 'other';
}

const clip = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);

function stepResult(step: ReadinessStep, byId: ReadonlyMap<string, Finding>): ReportResult {
  const result = STEP_RESULT[step.state];
  let severity: Severity | undefined;
  if (result === 'fail') {
    for (const id of step.findings) {
      const s = byId.get(id)?.severity;
      if (s && (severity === undefined || severityRank[s] < severityRank[severity])) severity = s;
    }
  }
  return {
    source: REPORT_SOURCE,
    policy: step.step,
    rule: 'readiness',
    category: step.title,
    result,
    ...(severity ? { severity: SEVERITY[severity].severity } : {}),
    message: clip(step.reason, MAX_TEXT),
    properties: { state: step.state, ...(step.findings.length > 0 ? { findings: clip(step.findings.join(','), MAX_IDS) } : {}) },
  };
}

function findingResult(finding: Finding, nodeName: ReportInput['nodeName']): ReportResult {
  const { result, severity } = SEVERITY[finding.severity];
  const resources = finding.nodes.slice(0, FINDING_NODES).flatMap((key) => {
    const name = nodeName(key);
    return name === undefined ? [] : [{ apiVersion: 'v1' as const, kind: 'Node' as const, name }];
  });
  const count = finding.evidence.nodeCount;
  const policy = policyOf(finding.code);
  const ms = Date.parse(finding.since);
  return {
    source: REPORT_SOURCE,
    policy,
    rule: finding.code,
    category: policy in READINESS_RULES ? READINESS_RULES[policy as ReadinessStepName].title : 'Other',
    result,
    severity,
    message: clip(finding.message, MAX_TEXT),
    ...(resources.length > 0 ? { resources } : {}),
    properties: { id: finding.id, nodeCount: String(typeof count === 'number' ? count : finding.nodes.length), remediation: clip(finding.remediation, MAX_TEXT) },
    ...(Number.isFinite(ms) ? { timestamp: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 } } : {}),
  };
}

const size = (result: ReportResult) => Buffer.byteLength(JSON.stringify(result));

export function buildReport(input: ReportInput): BuiltReport {
  const limits = input.limits ?? DEFAULT_REPORT_LIMITS;
  const byId = new Map(input.findings.map((f) => [f.id, f]));
  const results = input.readiness.steps.map((s) => stepResult(s, byId));
  let bytes = results.reduce((sum, r) => sum + size(r), 0);
  // One place is kept for the "left out" result.
  const room = limits.maxResults - results.length - 1;
  let listed = 0;
  for (const finding of input.findings) {
    if (listed >= room) break;
    const result = findingResult(finding, input.nodeName);
    const grown = bytes + size(result);
    if (grown > limits.maxBytes) break;
    results.push(result);
    bytes = grown;
    listed++;
  }
  const leftOut = input.findings.length - listed;
  if (leftOut > 0) {
    results.push({
      source: REPORT_SOURCE,
      policy: 'nodeprep',
      rule: 'results-left-out',
      category: 'Other',
      result: 'skip',
      message: `${leftOut} more active finding(s) are not listed: this report holds at most ${limits.maxResults} results and ${Math.round(limits.maxBytes / 1024)} KiB, most severe first. GET /v1/findings on the aggregator lists them all.`,
      properties: { leftOut: String(leftOut), findings: String(input.findings.length) },
    });
  }
  const summary: Record<ResultStatus, number> = { pass: 0, fail: 0, warn: 0, error: 0, skip: 0 };
  for (const r of results) summary[r.result]++;
  const { kind } = REPORT_KINDS[input.api];
  const object: ReportObject = {
    apiVersion: input.api,
    kind,
    metadata: { name: REPORT_NAME, labels: { 'app.kubernetes.io/name': 'nodeprep', 'app.kubernetes.io/managed-by': 'nodeprep-aggregator' } },
    ...(input.api === 'openreports.io/v1alpha1' ? { source: REPORT_SOURCE, configuration: { limits: { maxResults: limits.maxResults } } } : {}),
    summary,
    results,
  };
  return { object, listed, leftOut };
}
