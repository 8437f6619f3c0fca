// The guide's sizing (design.md section 9): every boundary, the guide's own example, beyond the
// guidance, unknown inputs, the policy-size parser and the values.yaml block.
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { IllumioSizing } from '../../protocol/illumio.js';
import { decideSizing, formatBytes, parsePolicySize, renderIllumioValues, SIZING_GUIDE, tierOf, tierResources } from '../../aggregator/illumio/sizing.js';

const Mi = 1024 ** 2;
const Gi = 1024 ** 3;
const known = (value: number, source = 'test') => ({ value, source });

t.test('the guide\'s table, as design.md section 9 has it', async (t) => {
  // Written out again on purpose, from the design document: the table in sizing.ts must match.
  t.same(
    SIZING_GUIDE.map((r) => [r.tier, r.nodes, r.workloads, r.policySize]),
    [
      ['small', [1, 10], [0, 1000], ['0Mi', '1.5Mi']],
      ['medium', [10, 20], [1000, 5000], ['1.5Mi', '500Mi']],
      ['large', [20, null], [5000, 8000], ['500Mi', '1.5Gi']],
    ],
  );
  const rows = SIZING_GUIDE.flatMap((r) =>
    (['cven', 'kubelink', 'storage'] as const).map((c) => [r.tier, c, r[c].requests.cpu, r[c].requests.memory, r[c].limits.cpu, r[c].limits.memory, c === 'storage' ? r.storage.volume : '']),
  );
  t.same(rows, [
    ['small', 'cven', '0.5', '600Mi', '1', '700Mi', ''],
    ['small', 'kubelink', '0.5', '500Mi', '1', '600Mi', ''],
    ['small', 'storage', '0.5', '500Mi', '1', '600Mi', '1Gi'],
    ['medium', 'cven', '2', '3Gi', '3', '5Gi', ''],
    ['medium', 'kubelink', '2', '5Gi', '2', '7Gi', ''],
    ['medium', 'storage', '1', '5Gi', '2', '7Gi', '5Gi'],
    ['large', 'cven', '2', '6Gi', '3', '8Gi', ''],
    ['large', 'kubelink', '3', '10Gi', '4', '12Gi', ''],
    ['large', 'storage', '1', '10Gi', '2', '12Gi', '10Gi'],
  ]);
  for (let i = 1; i < SIZING_GUIDE.length; i++) {
    t.equal(SIZING_GUIDE[i]!.nodes[0], SIZING_GUIDE[i - 1]!.nodes[1], `nodes: ${SIZING_GUIDE[i]!.tier} starts where the tier below ends`);
    t.equal(SIZING_GUIDE[i]!.workloads[0], SIZING_GUIDE[i - 1]!.workloads[1], 'workloads: contiguous');
    t.equal(SIZING_GUIDE[i]!.policySize[0], SIZING_GUIDE[i - 1]!.policySize[1], 'policy size: contiguous');
  }
});

t.test('every boundary: a shared value takes the higher tier', async (t) => {
  const cases: [name: 'nodes' | 'workloads' | 'policyBytes', value: number, tier: string, beyond: boolean][] = [
    ['nodes', 0, 'small', false],
    ['nodes', 1, 'small', false],
    ['nodes', 9, 'small', false],
    ['nodes', 10, 'medium', false],
    ['nodes', 19, 'medium', false],
    ['nodes', 20, 'large', false],
    ['nodes', 5000, 'large', false], // "20+": no end, never beyond
    ['workloads', 0, 'small', false],
    ['workloads', 999, 'small', false],
    ['workloads', 1000, 'medium', false],
    ['workloads', 4999, 'medium', false],
    ['workloads', 5000, 'large', false],
    ['workloads', 8000, 'large', false],
    ['workloads', 8001, 'large', true],
    ['policyBytes', 0, 'small', false],
    ['policyBytes', 1.5 * Mi - 1, 'small', false],
    ['policyBytes', 1.5 * Mi, 'medium', false],
    ['policyBytes', 500 * Mi - 1, 'medium', false],
    ['policyBytes', 500 * Mi, 'large', false],
    ['policyBytes', 1.5 * Gi, 'large', false],
    ['policyBytes', 1.5 * Gi + 1, 'large', true],
  ];
  for (const [name, value, tier, beyond] of cases) {
    t.same(tierOf(name, value), { tier, beyondGuidance: beyond }, `${name} ${value}: ${tier}${beyond ? ', beyond the guidance' : ''}`);
    const answer = decideSizing({ [name]: known(value) });
    t.equal(answer.tier, tier, `decideSizing ${name} ${value}: ${tier}`);
    t.equal(answer.beyondGuidance, beyond);
    t.same(answer.decidedBy, [name]);
  }
});

t.test('the guide\'s example: 8 nodes, 500 workloads and 1 Gi of policy is large', async (t) => {
  const answer = decideSizing({
    nodes: known(8, 'Node objects in the API'),
    workloads: known(500, 'pods counted'),
    policyBytes: known(Gi, 'configured'),
  });
  t.equal(answer.tier, 'large');
  t.same(answer.decidedBy, ['policyBytes']);
  t.match(answer.inputs, {
    nodes: { known: true, value: 8, display: '8', source: 'Node objects in the API', tier: 'small' },
    workloads: { known: true, value: 500, tier: 'small' },
    policyBytes: { known: true, value: Gi, display: '1Gi', source: 'configured', tier: 'large' },
  });
  t.same(answer.unknownInputs, []);
  t.equal(answer.mayBeHigher, false);
  t.equal(answer.beyondGuidance, false);
  t.equal(answer.reason, 'large, decided by policy size 1Gi (configured)');
  t.same(answer.resources, tierResources('large'));
  t.same(answer.resources.kubelink, { requests: { cpu: '3', memory: '10Gi' }, limits: { cpu: '4', memory: '12Gi' } });
  t.equal(answer.resources.storage.sizeGi, 10);
  t.ok(IllumioSizing.safeParse(answer).success, 'fits the GET /v1/illumio/sizing schema');
});

t.test('the highest tier wins; several inputs can decide together', async (t) => {
  const medium = decideSizing({ nodes: known(12), workloads: known(100), policyBytes: known(Mi) });
  t.equal(medium.tier, 'medium');
  t.same(medium.decidedBy, ['nodes']);
  const tie = decideSizing({ nodes: known(25), workloads: known(6000), policyBytes: known(Mi) });
  t.equal(tie.tier, 'large');
  t.same(tie.decidedBy, ['nodes', 'workloads']);
  t.match(tie.reason, /^large, decided by nodes 25 \(test\) and workloads 6000 \(test\)$/);
});

t.test('beyond the published guidance: large is the minimum, and the answer says so', async (t) => {
  const answer = decideSizing({ nodes: known(40), workloads: known(12_000), policyBytes: known(2 * Gi) });
  t.equal(answer.tier, 'large');
  t.equal(answer.beyondGuidance, true);
  t.same(answer.decidedBy, ['nodes', 'workloads', 'policyBytes']);
  t.match(answer.inputs, { nodes: { beyondGuidance: false }, workloads: { beyondGuidance: true }, policyBytes: { beyondGuidance: true, display: '2Gi' } });
  t.match(answer.reason, 'workloads 12000 and policy size 2Gi are beyond the published guidance');
  t.match(answer.reason, 'large is the minimum');
  t.same(answer.resources, tierResources('large'));
});

t.test('unknown inputs are named: the tier may be higher', async (t) => {
  const some = decideSizing({ nodes: known(5, 'Node objects in the API') });
  t.equal(some.tier, 'small');
  t.same(some.unknownInputs, ['workloads', 'policyBytes']);
  t.equal(some.mayBeHigher, true);
  t.equal(some.reason, 'small, decided by nodes 5 (Node objects in the API); workloads and policy size unknown: the tier may be higher');
  t.same(some.inputs.workloads, { name: 'workloads', known: false, beyondGuidance: false });

  const large = decideSizing({ nodes: known(30), workloads: known(600) });
  t.equal(large.mayBeHigher, false, 'nothing is above large');
  t.match(large.reason, 'policy size unknown: the cluster may be beyond the published guidance');

  const none = decideSizing({});
  t.equal(none.tier, 'small');
  t.same(none.decidedBy, []);
  t.same(none.unknownInputs, ['nodes', 'workloads', 'policyBytes']);
  t.match(none.reason, 'no input is known');
  t.ok(IllumioSizing.safeParse(none).success);
});

t.test('a value that is no count or size is the caller\'s bug', async (t) => {
  t.throws(() => decideSizing({ nodes: known(-1) }), RangeError);
  t.throws(() => decideSizing({ workloads: known(1.5) }), RangeError);
  t.throws(() => decideSizing({ policyBytes: known(Number.NaN) }), RangeError);
  t.equal(decideSizing({ policyBytes: known(1.5) }).tier, 'small', 'bytes need not be whole');
});

t.test('parsePolicySize: binary units only, and why', async (t) => {
  const good: [string, number, string][] = [
    ['1.5Mi', 1.5 * Mi, '1.5Mi'],
    ['500Mi', 500 * Mi, '500Mi'],
    ['1Gi', Gi, '1Gi'],
    ['1.5Gi', 1.5 * Gi, '1.5Gi'],
    [' 2 Gi ', 2 * Gi, '2Gi'],
    ['0Mi', 0, '0'],
    ['512Ki', 0.5 * Mi, '512Ki'],
    ['1536Ki', 1.5 * Mi, '1.5Mi'],
  ];
  for (const [text, bytes, display] of good) t.same(parsePolicySize(text), { ok: true, bytes, display }, `${text}: ${bytes} bytes`);
  const bad: [string, RegExp][] = [
    ['500MB', /decimal unit \(MB = 1,000,000 bytes\).*write Mi or Gi.*"500MB" is 476\.84Mi/],
    ['500M', /decimal unit/],
    ['1G', /decimal unit.*"1G" is 953\.67Mi/],
    ['1.5GB', /decimal unit/],
    ['700k', /decimal unit/],
    ['500MiB', /write the unit as Kubernetes and the guide do, 500Mi/],
    ['1gi', /1Gi/],
    ['1048576', /no unit/],
    ['lots', /not a size/],
    ['-1Mi', /not a size/],
    ['', /not a size/],
  ];
  for (const [text, message] of bad) {
    const parsed = parsePolicySize(text);
    t.notOk(parsed.ok, `${JSON.stringify(text)} refused`);
    if (!parsed.ok) t.match(parsed.error, message, `${JSON.stringify(text)}: says why`);
  }
});

t.test('formatBytes', async (t) => {
  t.equal(formatBytes(1.5 * Mi), '1.5Mi');
  t.equal(formatBytes(Gi), '1Gi');
  t.equal(formatBytes(1.5 * Gi + 1), '1.5Gi');
  t.equal(formatBytes(3 * 1024 ** 4), '3Ti');
  t.equal(formatBytes(100), '100');
});

t.test('renderIllumioValues: the block to paste, exactly Illumio\'s keys', async (t) => {
  for (const [inputs, tier] of [
    [{ nodes: known(3), workloads: known(10), policyBytes: known(Mi) }, 'small'],
    [{ nodes: known(15) }, 'medium'],
    [{ nodes: known(8), workloads: known(500), policyBytes: known(Gi, 'configured') }, 'large'],
  ] as const) {
    const answer = decideSizing(inputs);
    const text = renderIllumioValues(answer);
    const values = parseYaml(text) as Record<string, unknown>;
    const r = tierResources(tier);
    t.same(
      values,
      {
        cven: { resources: r.cven },
        kubelink: { resources: r.kubelink },
        storage: { resources: { requests: r.storage.requests, limits: r.storage.limits }, sizeGi: r.storage.sizeGi },
      },
      `${tier}: exactly cven.resources, kubelink.resources, storage.resources, storage.sizeGi`,
    );
    t.match(text, `tier ${tier}`);
    t.match(text, '# Raise limits when usage reaches 80% of them.');
    const lines = text.split('\n');
    const cpu = lines.filter((l) => l.includes('cpu:'));
    const memory = lines.filter((l) => l.includes('memory:'));
    t.equal(cpu.length, 6);
    t.ok(cpu.every((l) => /^ {6}cpu: "(0\.5|\d)"$/.test(l)), 'cpu as the guide writes it, quoted so it stays a string');
    t.equal(memory.length, 6);
    t.ok(memory.every((l) => /^ {6}memory: \d+(Mi|Gi)$/.test(l)), 'memory in Mi or Gi');
  }

  const example = renderIllumioValues(decideSizing({ nodes: known(8, 'Node objects in the API'), workloads: known(500, 'pods counted'), policyBytes: known(Gi, 'configured') }));
  t.match(example, '# Decided by: policy size 1Gi (configured).');
  t.match(example, '# Inputs: nodes 8 (Node objects in the API) -> small; workloads 500 (pods counted) -> small; policy size 1Gi (configured) -> large.');
  t.match(example, '# Unknown inputs: none.');

  const unknown = renderIllumioValues(decideSizing({ nodes: known(4) }));
  t.match(unknown, '# Unknown inputs: workloads and policy size (the tier may be higher).');
  t.match(unknown, 'workloads unknown');

  const beyond = renderIllumioValues(decideSizing({ workloads: known(9000) }));
  t.match(beyond, '# Beyond the published guidance');

  const hostile = renderIllumioValues(decideSizing({ nodes: known(3, 'api\ncven: {resources: {}}\n#') }));
  t.same(Object.keys(parseYaml(hostile) as object), ['cven', 'kubelink', 'storage'], 'a source with line breaks stays in its comment');
  t.same((parseYaml(hostile) as { cven: unknown }).cven, { resources: tierResources('small').cven });
});
