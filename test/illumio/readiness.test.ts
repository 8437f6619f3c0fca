// assessReadiness: a cluster that goes from not ready to ready one step at a time, then the
// decisions around each step (cluster view off, no Calico, unknown inputs, what leaves a step open).
import t from 'tap';
import { makeFinding, type FindingDraft } from '../../aggregator/detect/finding.js';
import { assessReadiness, READINESS_RULES, type ReadinessInput } from '../../aggregator/illumio/readiness.js';
import { checkRootCa, DEFAULT_ROOT_CA_LOCATION } from '../../aggregator/illumio/root-ca.js';
import { decideSizing } from '../../aggregator/illumio/sizing.js';
import { detectUndersized } from '../../aggregator/illumio/undersized.js';
import type { FindingCode, Severity } from '../../protocol/findings.js';
import { Readiness } from '../../protocol/illumio.js';
import { makePki } from './fixtures/pki.js';

const pki = makePki();
const now = new Date();

function finding(code: FindingCode, subject: string, extra: { severity?: Severity; evidence?: Record<string, unknown> } = {}): FindingDraft {
  return makeFinding(code, [subject], { nodes: [subject], message: code, remediation: '', evidence: extra.evidence ?? {}, ...(extra.severity ? { severity: extra.severity } : {}) });
}

const states = (r: ReturnType<typeof assessReadiness>) => r.steps.map((s) => s.state);

t.test('from not ready to ready, step by step', async (t) => {
  const sizing = decideSizing({ nodes: { value: 3, source: 'Node objects in the API' }, workloads: { value: 1200, source: 'pods counted' } });
  const duplicate = finding('MACHINE_ID_DUPLICATE', 'abc');
  const noAgent = finding('NODE_NO_AGENT', 'worker-3');
  const insert = finding('CALICO_INSERT_MODE', 'worker-1');
  const missingCa = checkRootCa({ location: DEFAULT_ROOT_CA_LOCATION, configMap: undefined, now });
  const undersized = detectUndersized({ cven: { containers: [{ name: 'illumio-ven', requests: { cpu: '500m', memory: '600Mi' }, limits: { cpu: '1', memory: '700Mi' } }] } }, sizing);
  t.equal(undersized.length, 1);

  const input: ReadinessInput = {
    findings: [duplicate, noAgent, insert, ...missingCa.findings, ...undersized],
    clusterView: true,
    nodes: { reporting: 2, inCluster: 3 },
    calico: 'in-use',
    rootCa: { state: missingCa.state },
    sizing,
  };
  const history: string[][] = [];
  const assess = () => {
    const r = assessReadiness(input);
    t.ok(Readiness.safeParse(r).success, 'fits the GET /v1/readiness schema');
    history.push(states(r));
    return r;
  };

  let r = assess();
  t.same(r.steps.map((s) => s.step), ['machine-ids', 'root-ca', 'sizing', 'calico-append'], 'the guide\'s order');
  t.same(states(r), ['not-ready', 'not-ready', 'not-ready', 'not-ready']);
  t.same(r.steps[0]!.findings, [duplicate.id], 'the finding that decides, not the one that only leaves it open');
  t.same(r.steps[1]!.findings, [missingCa.findings[0]!.id]);
  t.same(r.steps[2]!.findings, [undersized[0]!.id]);
  t.same(r.steps[3]!.findings, [insert.id]);
  t.equal(r.ready, false);
  t.same(r.nodes, { reporting: 2, inCluster: 3 });
  t.match(r.reason, /^not ready: .*; 2 of 3 nodes report$/);

  // The cloned node gets a fresh machine ID; the third node still has no agent.
  input.findings = input.findings.filter((f) => f !== duplicate);
  r = assess();
  t.equal(r.steps[0]!.state, 'unknown');
  t.same(r.steps[0]!.findings, [noAgent.id]);
  t.match(r.steps[0]!.reason, 'no nodeprep agent');

  // The third node's agent reports.
  input.findings = input.findings.filter((f) => f !== noAgent);
  input.nodes = { reporting: 3, inCluster: 3 };
  r = assess();
  t.equal(r.steps[0]!.state, 'ready');
  t.match(r.steps[0]!.reason, 'every reporting node (3)');

  // The root CA ConfigMap is created, and verifies the PCE.
  const created = checkRootCa({ location: DEFAULT_ROOT_CA_LOCATION, configMap: { ...DEFAULT_ROOT_CA_LOCATION, data: { 'root-ca.crt': pki.root.cert } }, now });
  input.findings = [...input.findings.filter((f) => f.code !== 'ILLUMIO_ROOT_CA_MISSING'), ...created.findings];
  input.rootCa = { state: created.state, pceOutcome: 'trusted' };
  r = assess();
  t.equal(r.steps[1]!.state, 'ready');
  t.match(r.steps[1]!.reason, 'the ConfigMap\'s CA verifies the PCE\'s certificate');

  // C-VEN is redeployed with the medium tier's values.
  input.findings = [
    ...input.findings.filter((f) => f.code !== 'ILLUMIO_UNDERSIZED'),
    ...detectUndersized({ cven: { containers: [{ name: 'illumio-ven', requests: { cpu: '2', memory: '3Gi' }, limits: { cpu: '3', memory: '5Gi' } }] } }, sizing),
  ];
  r = assess();
  t.equal(r.steps[2]!.state, 'ready', 'ready with an unknown input: the answer is the values to use');
  t.match(r.steps[2]!.reason, 'tier medium, decided by workloads 1200 (pods counted); policy size unknown: the tier may be higher');
  t.equal(r.ready, false, 'Calico is still in Insert mode');

  // Calico switched to Append.
  input.findings = input.findings.filter((f) => f !== insert);
  r = assess();
  t.same(states(r), ['ready', 'ready', 'ready', 'ready']);
  t.equal(r.ready, true);
  t.equal(r.tier, 'medium');
  t.match(r.reason, /^ready: install C-VEN and Kubelink with the medium tier's values; every step is ready and 3 of 3 nodes report$/);

  t.same(history, [
    ['not-ready', 'not-ready', 'not-ready', 'not-ready'],
    ['unknown', 'not-ready', 'not-ready', 'not-ready'],
    ['ready', 'not-ready', 'not-ready', 'not-ready'],
    ['ready', 'ready', 'not-ready', 'not-ready'],
    ['ready', 'ready', 'ready', 'not-ready'],
    ['ready', 'ready', 'ready', 'ready'],
  ]);
});

const readyBase = (): ReadinessInput => ({
  findings: [],
  clusterView: true,
  nodes: { reporting: 4, inCluster: 4 },
  calico: 'in-use',
  rootCa: { state: 'ok', pceOutcome: 'trusted' },
  sizing: decideSizing({ nodes: { value: 4, source: 'api' }, workloads: { value: 10, source: 'pods' } }),
});

t.test('a ready cluster is ready', async (t) => {
  const r = assessReadiness(readyBase());
  t.equal(r.ready, true);
  t.same(r.otherBlockers, []);
});

t.test('the cluster view off: root CA and sizing unknown, node count unknown, not ready', async (t) => {
  const r = assessReadiness({ ...readyBase(), clusterView: false, nodes: { reporting: 4 }, rootCa: undefined });
  t.same(states(r), ['ready', 'unknown', 'unknown', 'ready']);
  t.match(r.steps[1]!.reason, 'the cluster view is off');
  t.match(r.steps[2]!.reason, 'the cluster view is off');
  t.same(r.nodes, { reporting: 4 });
  t.equal(r.ready, false);
  t.match(r.reason, 'nodes in the cluster unknown');
});

t.test('each step\'s other outcomes', async (t) => {
  const cases: { name: string; change: Partial<ReadinessInput>; step: number; state: string; reason: RegExp; decided?: 'all' | 'none' }[] = [
    { name: 'no node reported yet', change: { nodes: { reporting: 0, inCluster: 4 } }, step: 0, state: 'unknown', reason: /no node has reported/ },
    { name: 'a node not yet seen', change: { nodes: { reporting: 3, inCluster: 4 } }, step: 3, state: 'unknown', reason: /3 of 4 nodes report/ },
    { name: 'machine ID invalid', change: { findings: [finding('MACHINE_ID_INVALID', 'n1')] }, step: 0, state: 'not-ready', reason: /no valid machine ID/, decided: 'all' },
    { name: 'kubelet not restarted after a fix', change: { findings: [finding('KUBELET_MACHINE_ID_STALE', 'n1')] }, step: 0, state: 'not-ready', reason: /restart it/, decided: 'all' },
    { name: 'a stale node', change: { findings: [finding('NODE_STALE', 'n1')] }, step: 0, state: 'unknown', reason: /stopped reporting/, decided: 'all' },
    { name: 'D-Bus copy differs: ready, listed', change: { findings: [finding('MACHINE_ID_DBUS_MISMATCH', 'n1')] }, step: 0, state: 'ready', reason: /valid machine ID/, decided: 'all' },
    { name: 'root CA check not run yet', change: { rootCa: undefined }, step: 1, state: 'unknown', reason: /not checked yet/ },
    {
      name: 'no ConfigMap needed',
      change: { rootCa: { state: 'missing', pceOutcome: 'trusted' }, findings: [finding('ILLUMIO_ROOT_CA_MISSING', 'cm', { severity: 'info' })] },
      step: 1, state: 'ready', reason: /no ConfigMap is needed/, decided: 'all',
    },
    { name: 'ConfigMap missing, finding not passed along', change: { rootCa: { state: 'missing' } }, step: 1, state: 'not-ready', reason: /no root CA ConfigMap/ },
    { name: 'ConfigMap invalid', change: { rootCa: { state: 'invalid' }, findings: [finding('ILLUMIO_ROOT_CA_INVALID', 'cm')] }, step: 1, state: 'not-ready', reason: /no usable CA/, decided: 'all' },
    { name: 'PCE untrusted', change: { findings: [finding('ILLUMIO_PCE_TLS_UNTRUSTED', 'pce')] }, step: 1, state: 'not-ready', reason: /does not verify/, decided: 'all' },
    {
      name: 'an intermediate CA without its root',
      change: { rootCa: { state: 'ok' }, findings: checkRootCa({ location: DEFAULT_ROOT_CA_LOCATION, configMap: { ...DEFAULT_ROOT_CA_LOCATION, data: { 'root-ca.crt': pki.intermediate.cert } }, now }).findings },
      step: 1, state: 'not-ready', reason: /^the root CA ConfigMap holds an intermediate CA without its root$/, decided: 'all',
    },
    { name: 'PCE unreachable', change: { rootCa: { state: 'ok', pceOutcome: 'unreachable' }, findings: [finding('ILLUMIO_PCE_UNREACHABLE', 'pce')] }, step: 1, state: 'unknown', reason: /could not be reached/, decided: 'all' },
    { name: 'a CA expiring soon', change: { findings: [finding('ILLUMIO_ROOT_CA_EXPIRING', 'cm')] }, step: 1, state: 'ready', reason: /expires soon/, decided: 'all' },
    { name: 'PCE untrusted, finding not passed along', change: { rootCa: { state: 'ok', pceOutcome: 'untrusted' } }, step: 1, state: 'not-ready', reason: /does not verify/ },
    { name: 'no PCE URL', change: { rootCa: { state: 'ok' } }, step: 1, state: 'ready', reason: /no PCE URL configured/ },
    { name: 'sizing not computed', change: { sizing: undefined }, step: 2, state: 'unknown', reason: /not computed yet/ },
    { name: 'no sizing input known', change: { sizing: decideSizing({}) }, step: 2, state: 'unknown', reason: /no input is known/ },
    { name: 'beyond the guidance', change: { sizing: decideSizing({ workloads: { value: 9000, source: 'pods' } }) }, step: 2, state: 'unknown', reason: /beyond the published guidance/ },
    { name: 'Calico not in use', change: { calico: 'not-in-use', nodes: { reporting: 3, inCluster: 4 } }, step: 3, state: 'ready', reason: /Calico not in use/ },
    { name: 'Calico use unknown', change: { calico: 'unknown' }, step: 3, state: 'unknown', reason: /not known yet/ },
    { name: 'configured for Insert', change: { findings: [finding('CALICO_CONFIG_NOT_APPEND', 'default')] }, step: 3, state: 'not-ready', reason: /configured for Insert/, decided: 'all' },
    { name: 'nftables dataplane', change: { findings: [finding('CALICO_NFT_DATAPLANE', 'n1')] }, step: 3, state: 'unknown', reason: /nftables dataplane/, decided: 'all' },
    { name: 'iptables not read', change: { findings: [finding('AGENT_COLLECTION_ERROR', 'n1', { evidence: { source: 'iptables' } })] }, step: 3, state: 'unknown', reason: /could not read/, decided: 'all' },
    { name: 'another source not read', change: { findings: [finding('AGENT_COLLECTION_ERROR', 'n1', { evidence: { source: 'illumio' } })] }, step: 3, state: 'ready', reason: /Append mode/, decided: 'none' },
    { name: 'incomplete table', change: { findings: [finding('IPTABLES_INCOMPLETE', 'n1')] }, step: 3, state: 'unknown', reason: /read whole/, decided: 'all' },
    {
      name: 'not-ready wins over unknown',
      change: { findings: [finding('IPTABLES_INCOMPLETE', 'n1'), finding('CALICO_MODE_MIXED', 'c')] },
      step: 3, state: 'not-ready', reason: /disagree on Calico's mode/,
    },
  ];
  for (const c of cases) {
    const input = { ...readyBase(), ...c.change };
    const r = assessReadiness(input);
    const s = r.steps[c.step]!;
    t.equal(s.state, c.state, `${c.name}: ${s.title} ${c.state}`);
    t.match(s.reason, c.reason, `${c.name}: ${s.reason}`);
    if (c.decided === 'all') t.same(s.findings, input.findings.map((f) => f.id), `${c.name}: the deciding ids`);
    if (c.decided === 'none') t.same(s.findings, [], `${c.name}: no deciding id`);
    t.equal(r.ready, c.state === 'ready' && c.name !== 'Calico not in use', `${c.name}: overall`);
    t.ok(Readiness.safeParse(r).success);
  }
});

t.test('a server VEN blocks the installation outside the four steps', async (t) => {
  const serverVen = finding('ILLUMIO_SERVER_VEN', 'n1');
  const r = assessReadiness({ ...readyBase(), findings: [serverVen] });
  t.same(states(r), ['ready', 'ready', 'ready', 'ready']);
  t.same(r.otherBlockers, [serverVen.id]);
  t.equal(r.ready, false);
  t.match(r.reason, 'a server VEN is installed');
});

t.test('no code sits in two lists of one step', async (t) => {
  for (const [step, rule] of Object.entries(READINESS_RULES)) {
    const all = [...rule.blocks, ...rule.leavesOpen, ...rule.qualifies];
    t.equal(new Set(all).size, all.length, `${step}: no code twice`);
  }
});
