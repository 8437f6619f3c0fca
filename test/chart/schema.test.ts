// values.schema.json: self-contained (air-gapped installs) and rejecting bad values clearly.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { chartDir, template } from '../support/helm.js';

const schema: unknown = JSON.parse(readFileSync(join(chartDir, 'values.schema.json'), 'utf8'));

function walk(node: unknown, path: string, visit: (key: string, value: unknown, path: string) => void): void {
  if (Array.isArray(node)) node.forEach((v, i) => walk(v, `${path}/${i}`, visit));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      visit(k, v, `${path}/${k}`);
      walk(v, `${path}/${k}`, visit);
    }
  }
}

t.test('no external references', async (t) => {
  const refs: string[] = [];
  const ids: string[] = [];
  walk(schema, '', (k, v, p) => {
    if (k === '$ref') refs.push(`${p} = ${String(v)}`);
    if (k === '$id' || k === 'id') ids.push(`${p} = ${String(v)}`);
  });
  t.ok(refs.length > 0, 'uses local references');
  for (const r of refs) t.match(r, / = #\/definitions\/[A-Za-z]+$/, `${r} is local`);
  const definitions = (schema as { definitions: Record<string, unknown> }).definitions;
  for (const r of refs) {
    const name = r.split('/').pop() as string;
    t.ok(name in definitions, `${r} resolves`);
  }
  t.same(ids, [], 'no $id that a validator could try to fetch');
});

t.test('the defaults and every documented key are in the schema', async (t) => {
  // additionalProperties is false on the chart's own objects: a key in values.yaml missing from
  // the schema would fail here first.
  const values = parse(readFileSync(join(chartDir, 'values.yaml'), 'utf8')) as Record<string, unknown>;
  const props = (schema as { properties: Record<string, unknown> }).properties;
  for (const key of Object.keys(values)) t.ok(key in props, `${key} is described`);
  const res = template();
  t.equal(res.status, 0, 'the defaults pass');
});

// Each bad value and the words helm's error must contain: where it is, and what is wrong.
const bad: [string, Record<string, unknown>, RegExp][] = [
  ['typo in a key', { 'agent.tolleration': [] }, /at '\/agent': additional properties 'tolleration' not allowed/],
  ['unknown toleration operator', { 'agent.tolerations': [{ operator: 'Maybe' }] }, /at '\/agent\/tolerations\/0\/operator': value must be one of 'Exists', 'Equal'/],
  ['sample interval of 0', { 'agent.sampleIntervalSeconds': 0 }, /at '\/agent\/sampleIntervalSeconds': minimum: got 0, want 1/],
  ['sample interval as text', { 'agent.sampleIntervalSeconds': 'fast' }, /at '\/agent\/sampleIntervalSeconds': got string, want number/],
  ['maxUnavailable not a number or percent', { 'agent.updateStrategy': { rollingUpdate: { maxUnavailable: 'ten' } } }, /at '\/agent\/updateStrategy\/rollingUpdate\/maxUnavailable'/],
  ['aggregator URL without scheme', { 'agent.aggregatorUrl': 'aggregator:8080' }, /at '\/agent\/aggregatorUrl': 'aggregator:8080' does not match pattern/],
  ['port out of range', { 'aggregator.port': 70000 }, /at '\/aggregator\/port': maximum: got 70,?000, want 65,?535/],
  ['unknown log level', { 'aggregator.config.logLevel': 'loud' }, /at '\/aggregator\/config\/logLevel': value must be one of/],
  ['agent log level the agent does not know', { 'agent.logLevel': 'verbose' }, /at '\/agent\/logLevel': value must be one of/],
  ['CIDR without prefix', { 'aggregator.networkPolicy.agentCIDRs': ['10.0.0.1'] }, /at '\/aggregator\/networkPolicy\/agentCIDRs\/0': '10.0.0.1' does not match pattern/],
  ['image without repository', { 'agent.image.repository': '' }, /at '\/agent\/image\/repository': minLength/],
  ['bad pull policy', { 'aggregator.image.pullPolicy': 'Sometimes' }, /at '\/aggregator\/image\/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'/],
  ['bad digest', { 'agent.image.digest': 'latest' }, /at '\/agent\/image\/digest'/],
  ['resources with a typo', { 'agent.resources': { limit: { memory: '1Gi' } } }, /at '\/agent\/resources': additional properties 'limit' not allowed/],
  ['memory quantity with a bad unit', { 'agent.resources.limits.memory': '128MB' }, /at '\/agent\/resources\/limits\/memory': '128MB' does not match pattern/],
  ['existing Secret name with capitals', { 'auth.existingSecret': 'My_Token' }, /at '\/auth\/existingSecret'/],
  ['extraEnv entry without name', { 'agent.extraEnv': [{ value: 'x' }] }, /at '\/agent\/extraEnv\/0': missing property 'name'/],
  ['cluster name that is not a DNS-1123 label', { clusterName: 'EU/1' }, /at '\/clusterName': 'EU\/1' does not match pattern/],
  ['unknown host mount mode', { 'agent.hostMounts.mode': 'host' }, /at '\/agent\/hostMounts\/mode': value must be one of 'directories', 'files'/],
  ['unknown recursiveReadOnly', { 'agent.hostMounts.recursiveReadOnly': 'Always' }, /at '\/agent\/hostMounts\/recursiveReadOnly': value must be one of/],
  ['token lifetime under the API minimum', { 'agent.tokenExpirationSeconds': 60 }, /at '\/agent\/tokenExpirationSeconds': minimum: got 60, want 600/],
  ['PCE URL with a scheme', { 'illumio.pceUrl': 'https://pce.example.com:8443' }, /at '\/illumio\/pceUrl': 'https:\/\/pce.example.com:8443' does not match pattern/],
  ['PCE URL without a port', { 'illumio.pceUrl': 'pce.example.com' }, /at '\/illumio\/pceUrl'/],
  ['policy size in decimal units', { 'illumio.policySize': '1GB' }, /at '\/illumio\/policySize': '1GB' does not match pattern/],
  ['negative workload count', { 'illumio.workloads': -1 }, /at '\/illumio\/workloads'/],
  ['Calico ConfigMap name with capitals', { 'aggregator.clusterView.calicoConfigMaps': ['Calico'] }, /at '\/aggregator\/clusterView\/calicoConfigMaps\/0'/],
  ['typo in the TLS block', { 'aggregator.tls.enable': true }, /at '\/aggregator\/tls': additional properties 'enable' not allowed/],
  ['disabling an alert the chart does not have', { 'aggregator.prometheusRule.defaultRules.disabled': ['NodeprepAgentDown'] }, /at '\/aggregator\/prometheusRule\/defaultRules\/disabled\/0': value must be one of 'NodeprepAggregatorDown'/],
  ['a runbook base URL without a scheme', { 'aggregator.prometheusRule.runbookBaseUrl': 'wiki.example.com/runbooks' }, /at '\/aggregator\/prometheusRule\/runbookBaseUrl': 'wiki.example.com\/runbooks' does not match pattern/],
  ['a rule selector with braces', { 'aggregator.prometheusRule.selector': '{job="nodeprep"}' }, /at '\/aggregator\/prometheusRule\/selector'/],
  ['an alert label Prometheus would refuse', { 'aggregator.prometheusRule.defaultRules.additionalRuleLabels': { 'team-name': 'platform' } }, /at '\/aggregator\/prometheusRule\/defaultRules\/additionalRuleLabels': additional properties 'team-name' not allowed/],
  ['an additional rule without expr', { 'aggregator.prometheusRule.additionalRules': [{ alert: 'Mine' }] }, /at '\/aggregator\/prometheusRule\/additionalRules\/0': missing property 'expr'/],
  ['an additional rule that is neither alert nor record', { 'aggregator.prometheusRule.additionalRules': [{ expr: 'up' }] }, /at '\/aggregator\/prometheusRule\/additionalRules\/0'/],
  ['a typo in the dashboard block', { 'aggregator.grafanaDashboard.enable': true }, /at '\/aggregator\/grafanaDashboard': additional properties 'enable' not allowed/],
  ['a dashboard namespace that is not a DNS-1123 label', { 'aggregator.grafanaDashboard.namespace': 'Monitoring' }, /at '\/aggregator\/grafanaDashboard\/namespace': 'Monitoring' does not match pattern/],
];

for (const [what, set, message] of bad) {
  t.test(`rejects ${what}`, async (t) => {
    const res = template({ set });
    t.not(res.status, 0, 'helm template fails');
    t.match(res.stderr, /values don't meet the specifications of the schema/, 'because of the schema');
    t.match(res.stderr, message, 'with a message that names the value');
  });
}

// Contradictions between values are caught by the templates, with a message that says what to set.
const contradictions: [string, Record<string, unknown>, RegExp][] = [
  ['both components off', { 'agent.enabled': false, 'aggregator.enabled': false }, /nothing to install/],
  ['no aggregator and no URL', { 'aggregator.enabled': false, 'auth.existingSecret': 't' }, /aggregator\.enabled=false needs agent\.aggregatorUrl/],
  ['a remote aggregator without a cluster name', { 'aggregator.enabled': false, 'agent.aggregatorUrl': 'https://a.example.com', 'auth.existingSecret': 't' }, /agent\.aggregatorUrl needs clusterName/],
  ['a remote aggregator without a token', { 'aggregator.enabled': false, 'agent.aggregatorUrl': 'https://a.example.com', clusterName: 'edge' }, /agent\.aggregatorUrl needs auth\.existingSecret/],
  ['a shared token for local agents that the aggregator would not accept', { 'auth.existingSecret': 't' }, /auth\.existingSecret is only for agents that report to another aggregator/],
  ['no cluster view and no cluster name', { 'aggregator.clusterView.enabled': false }, /aggregator\.clusterView\.enabled=false needs clusterName/],
  ['cert-manager without an issuer', { 'aggregator.tls.certManager.enabled': true }, /needs aggregator\.tls\.certManager\.issuerRef\.name/],
  ['NetworkPolicy without agent CIDRs', { 'aggregator.networkPolicy.enabled': true }, /needs aggregator\.networkPolicy\.agentCIDRs/],
];

for (const [what, set, message] of contradictions) {
  t.test(`rejects ${what}`, async (t) => {
    const res = template({ set });
    t.not(res.status, 0, 'helm template fails');
    t.match(res.stderr, message);
  });
}
