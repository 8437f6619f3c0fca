// The report object, built: the mapping of steps and findings to results, the Nodes as
// resources, the bounds at any cluster size, and both APIs' objects valid against the upstream
// CRDs' own schemas (test/fixtures/crds, openreports/reports-api v0.2.1 and Kyverno's
// wgpolicyk8s.io ones) with ajv.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import t from 'tap';
import { parse } from 'yaml';
import { makeFinding } from '../../aggregator/detect/finding.js';
import { assessReadiness } from '../../aggregator/illumio/readiness.js';
import { decideSizing } from '../../aggregator/illumio/sizing.js';
import { homeNodeName } from '../../aggregator/publish/home-cluster.js';
import { buildReport, DEFAULT_REPORT_LIMITS, policyOf, type ReportApi, type ReportObject } from '../../aggregator/publish/report-object.js';
import type { Finding, FindingCode, Severity } from '../../protocol/findings.js';
import { FIXTURES } from '../support/fixtures.js';

const SINCE = '2026-03-01T10:00:00.250Z';

function finding(code: FindingCode, nodes: string[], extra: { severity?: Severity; nodeCount?: number; message?: string; remediation?: string } = {}): Finding {
  const draft = makeFinding(code, nodes.length > 0 ? nodes : [code], {
    nodes,
    message: extra.message ?? `${code} on ${nodes.length} node(s)`,
    remediation: extra.remediation ?? 'do this',
    evidence: extra.nodeCount === undefined ? {} : { nodeCount: extra.nodeCount },
    ...(extra.severity ? { severity: extra.severity } : {}),
  });
  return { ...draft, since: SINCE };
}

// The upstream schema of a vendored CRD, for ajv (which does not know the x-kubernetes-* keywords).
function validatorFor(file: string) {
  const crd = parse(readFileSync(path.join(FIXTURES, 'crds', file), 'utf8')) as { spec: { versions: { schema: { openAPIV3Schema: object } }[] } };
  const ajv = new Ajv({ strict: false, allErrors: true });
  return ajv.compile(crd.spec.versions[0]!.schema.openAPIV3Schema);
}
const validators: Record<ReportApi, ReturnType<typeof validatorFor>> = {
  'openreports.io/v1alpha1': validatorFor('openreports.io_clusterreports.yaml'),
  'wgpolicyk8s.io/v1alpha2': validatorFor('wgpolicyk8s.io_clusterpolicyreports.yaml'),
};

/** Every field of the object is one the CRD's schema declares (the API server would prune others). */
function undeclared(object: unknown, schema: Record<string, unknown>, at = ''): string[] {
  if (Array.isArray(object)) return object.flatMap((item, i) => undeclared(item, (schema.items ?? {}) as Record<string, unknown>, `${at}[${i}]`));
  if (!object || typeof object !== 'object') return [];
  const props = schema.properties as Record<string, Record<string, unknown>> | undefined;
  if (!props) return [];
  return Object.entries(object).flatMap(([k, v]) => (k in props ? (k === 'metadata' ? [] : undeclared(v, props[k]!, `${at}.${k}`)) : [`${at}.${k}`]));
}

function schemaOf(api: ReportApi): Record<string, unknown> {
  const file = api === 'openreports.io/v1alpha1' ? 'openreports.io_clusterreports.yaml' : 'wgpolicyk8s.io_clusterpolicyreports.yaml';
  const crd = parse(readFileSync(path.join(FIXTURES, 'crds', file), 'utf8')) as { spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] } };
  return crd.spec.versions[0]!.schema.openAPIV3Schema;
}

const sizing = decideSizing({ nodes: { value: 3, source: 'Node objects in the API' }, workloads: { value: 100, source: 'pods counted' } });

function readinessOf(findings: Finding[]) {
  return assessReadiness({ findings, clusterView: true, nodes: { reporting: 2, inCluster: 3 }, calico: 'in-use', rootCa: { state: 'ok' }, sizing });
}

const nodeName = (key: string) => homeNodeName('', key);

t.test('steps and findings as results: policy, rule, result, severity, resources, properties', async (t) => {
  const duplicate = finding('MACHINE_ID_DUPLICATE', ['worker-2', 'worker-3'], { nodeCount: 2 });
  const insert = finding('CALICO_INSERT_MODE', ['worker-2']);
  const uuid = finding('SYSTEM_UUID_DUPLICATE', ['worker-1', 'worker-2']);
  const rootCa = finding('ILLUMIO_ROOT_CA_MISSING', []);
  const serverVen = finding('ILLUMIO_SERVER_VEN', ['worker-1']);
  const findings = [duplicate, serverVen, insert, rootCa, uuid];
  const readiness = readinessOf(findings);
  const { object, listed, leftOut } = buildReport({ api: 'openreports.io/v1alpha1', readiness, findings, nodeName });
  t.equal(listed, 5);
  t.equal(leftOut, 0);
  t.match(object, { apiVersion: 'openreports.io/v1alpha1', kind: 'ClusterReport', metadata: { name: 'nodeprep' }, source: 'nodeprep', configuration: { limits: { maxResults: DEFAULT_REPORT_LIMITS.maxResults } } });

  const steps = object.results.slice(0, 4);
  t.same(steps.map((r) => [r.policy, r.rule, r.result]), [
    ['machine-ids', 'readiness', 'fail'],
    ['root-ca', 'readiness', 'fail'],
    ['sizing', 'readiness', 'pass'],
    ['calico-append', 'readiness', 'fail'],
  ], 'the guide\'s four steps in its order, pass when ready');
  t.equal(steps[0]!.severity, 'critical', 'a step fails with its most severe blocking finding\'s severity');
  t.equal(steps[3]!.severity, 'medium');
  t.notOk('severity' in steps[2]!, 'a passing step has none');
  t.same(steps[0]!.properties, { state: 'not-ready', findings: readiness.steps[0]!.findings.join(',') });
  t.equal(steps[0]!.message, readiness.steps[0]!.reason, 'the step\'s reason, as GET /v1/readiness says it');

  const byRule = new Map(object.results.slice(4).map((r) => [r.rule, r]));
  t.match(byRule.get('MACHINE_ID_DUPLICATE'), {
    policy: 'machine-ids', result: 'fail', severity: 'critical', category: 'Unique machine IDs',
    resources: [{ apiVersion: 'v1', kind: 'Node', name: 'worker-2' }, { apiVersion: 'v1', kind: 'Node', name: 'worker-3' }],
    properties: { id: duplicate.id, nodeCount: '2', remediation: 'do this' },
    timestamp: { seconds: Date.parse(SINCE) / 1000 - 0.25, nanos: 250_000_000 },
  });
  t.match(byRule.get('CALICO_INSERT_MODE'), { policy: 'calico-append', result: 'warn', severity: 'medium' });
  t.match(byRule.get('SYSTEM_UUID_DUPLICATE'), { policy: 'machine-ids', result: 'pass', severity: 'info' }, 'info findings pass');
  t.match(byRule.get('ILLUMIO_SERVER_VEN'), { policy: 'server-ven', result: 'fail' }, 'outside the steps');
  t.notOk('resources' in byRule.get('ILLUMIO_ROOT_CA_MISSING')!, 'a finding about no node has no resources');
  t.same(object.summary, { pass: 2, fail: 5, warn: 2, error: 0, skip: 0 }, 'summary counts the results');
  t.equal(policyOf('NODE_NO_AGENT'), 'machine-ids', 'a code of two steps belongs to the first in the guide\'s order');

  for (const api of ['openreports.io/v1alpha1', 'wgpolicyk8s.io/v1alpha2'] as const) {
    const built = buildReport({ api, readiness, findings, nodeName }).object;
    const valid = validators[api];
    t.ok(valid(built), `${api}: valid against the upstream CRD's schema ${JSON.stringify(valid.errors)}`);
    t.same(undeclared(built, schemaOf(api)), [], `${api}: no field the CRD would prune`);
  }
  const old = buildReport({ api: 'wgpolicyk8s.io/v1alpha2', readiness, findings, nodeName }).object;
  t.equal(old.kind, 'ClusterPolicyReport');
  t.notOk('source' in old || 'configuration' in old, 'ClusterPolicyReport has neither source nor configuration');
});

t.test('nodes of other clusters are no resources here; an unknown step is an error result', async (t) => {
  const findings = [finding('MACHINE_ID_DUPLICATE', ['prod/worker-1', 'prod/worker-2'], { nodeCount: 2 }), finding('NODE_NO_AGENT', ['prod/worker-9'])];
  const readiness = assessReadiness({ findings, clusterView: true, nodes: { reporting: 0, inCluster: 3 }, calico: 'unknown' });
  const { object } = buildReport({ api: 'openreports.io/v1alpha1', readiness, findings, nodeName: (key) => homeNodeName('prod', key) });
  t.same(object.results[4]!.resources!.map((r) => r.name), ['worker-1', 'worker-2'], 'the home cluster\'s prefix taken off');
  const other = buildReport({ api: 'openreports.io/v1alpha1', readiness, findings, nodeName: (key) => homeNodeName('lab', key) }).object;
  t.notOk('resources' in other.results[4]!, 'another cluster\'s nodes are not Nodes of this one');
  t.equal(object.results.find((r) => r.policy === 'calico-append' && r.rule === 'readiness')!.result, 'error', 'unknown: could not be evaluated');
});

t.test('bounded at any cluster size: well under 1 MiB, the most severe kept, the rest counted', async (t) => {
  // 5,000 findings of 100 nodes each with the longest node names Kubernetes allows, and long texts.
  const longName = (i: number) => `${'n'.repeat(240)}-${String(i).padStart(12, '0')}`;
  const long = 'x'.repeat(5000);
  const findings: Finding[] = [];
  for (let i = 0; i < 5000; i++) {
    const nodes = Array.from({ length: 100 }, (_, k) => longName(i * 100 + k));
    findings.push(finding(i % 2 === 0 ? 'MACHINE_ID_DUPLICATE' : 'NODE_NO_AGENT', nodes, { nodeCount: 250, message: long, remediation: long, ...(i % 2 === 0 ? {} : { severity: 'warning' }) }));
  }
  findings.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'critical' ? -1 : 1));
  const { object, listed, leftOut } = buildReport({ api: 'openreports.io/v1alpha1', readiness: readinessOf(findings), findings, nodeName });
  const bytes = Buffer.byteLength(JSON.stringify(object));
  t.ok(bytes < DEFAULT_REPORT_LIMITS.maxBytes + 4096, `${bytes} bytes: within the byte bound and its envelope`);
  t.ok(bytes < 1024 * 1024 * 0.6, 'well under 1 MiB');
  t.equal(listed + leftOut, 5000);
  t.ok(listed > 0, `${listed} findings listed`);
  t.ok(object.results.slice(4, 4 + listed).every((r) => r.severity === 'critical'), 'the most severe first');
  const skip = object.results.at(-1)!;
  t.match(skip, { rule: 'results-left-out', result: 'skip', properties: { leftOut: String(leftOut), findings: '5000' } });
  t.match(skip.message, /GET \/v1\/findings/);
  t.equal(object.summary.skip, 1);
  t.ok(object.results.every((r) => r.message.length <= 1024 && (r.properties.remediation ?? '').length <= 1024), 'texts cut to 1 KiB');
  t.ok(validators['openreports.io/v1alpha1'](object), 'still valid');

  // Small findings: the count bound stops them first.
  const small = Array.from({ length: 5000 }, (_, i) => finding('NODE_NO_AGENT', [`node-${i}`]));
  const counted = buildReport({ api: 'openreports.io/v1alpha1', readiness: readinessOf(small), findings: small, nodeName });
  t.equal(counted.object.results.length, DEFAULT_REPORT_LIMITS.maxResults, 'exactly maxResults results, the "left out" one included');
  t.equal(counted.leftOut, 5000 - (DEFAULT_REPORT_LIMITS.maxResults - 5));
  const configured = buildReport({ api: 'openreports.io/v1alpha1', readiness: readinessOf(small), findings: small, nodeName, limits: { maxResults: 10, maxBytes: 1 << 20 } });
  t.equal(configured.object.results.length, 10);
  t.equal((configured.object as ReportObject).configuration!.limits.maxResults, 10, 'configuration.limits says the bound');
});

t.test('the same findings give the same object: nothing in it moves with the clock', async (t) => {
  const findings = [finding('CALICO_INSERT_MODE', ['worker-2'])];
  const a = buildReport({ api: 'openreports.io/v1alpha1', readiness: readinessOf(findings), findings, nodeName });
  await new Promise((r) => setTimeout(r, 20));
  const b = buildReport({ api: 'openreports.io/v1alpha1', readiness: readinessOf(findings), findings, nodeName });
  t.same(a, b);
});

t.test('resources: at most 100 Nodes per result, whatever the finding lists; nodeCount says how many', async (t) => {
  const many = Array.from({ length: 150 }, (_, i) => `node-${String(i).padStart(3, '0')}`);
  const wide = finding('NODE_NO_AGENT', many, { nodeCount: 150 });
  const { object } = buildReport({ api: 'openreports.io/v1alpha1', readiness: readinessOf([wide]), findings: [wide], nodeName });
  const result = object.results.find((r) => r.rule === 'NODE_NO_AGENT')!;
  t.equal(result.resources!.length, 100);
  t.same(result.resources!.map((r) => r.name), many.slice(0, 100), 'the first 100, in the finding\'s order');
  t.equal(result.properties.nodeCount, '150');
});
