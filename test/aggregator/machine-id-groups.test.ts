// MachineIdGroups against the obvious model (a Map of node -> ID and source, grouped on demand),
// over random sequences of nodes joining, moving and leaving: a group of one is kept as a bare
// node key and must be indistinguishable from a group of many.
import fc from 'fast-check';
import t from 'tap';
import { MachineIdGroups, type MachineIdSource } from '../../aggregator/findings/machine-id-groups.js';
import { propertySeed } from '../support/fast-check.js';

type Step = { node: string; id: string | undefined; source: MachineIdSource };

const step = fc.record({
  node: fc.constantFrom('a', 'b', 'c', 'd'),
  id: fc.option(fc.constantFrom('x', 'y', 'z'), { nil: undefined }),
  source: fc.constantFrom<MachineIdSource>('agent', 'kubelet'),
});

t.test('groups, duplicates and changed IDs agree with the model at every step', async (t) => {
  fc.assert(
    fc.property(fc.array(step, { maxLength: 40 }), (steps: Step[]) => {
      const groups = new MachineIdGroups();
      const model = new Map<string, { id: string; source: MachineIdSource }>();
      for (const { node, id, source } of steps) {
        const before = model.get(node);
        const changed = groups.set(node, id, source);
        if (id === undefined) model.delete(node);
        else model.set(node, { id, source });
        const same = before?.id === id && (id === undefined || before?.source === source);
        const expected = same ? [] : [...new Set([before?.id, id].filter((x): x is string => x !== undefined))];
        if (JSON.stringify(changed) !== JSON.stringify(expected)) throw new Error(`changed ${JSON.stringify(changed)}, expected ${JSON.stringify(expected)}`);
        for (const gid of ['x', 'y', 'z']) {
          const members = [...model].filter(([, v]) => v.id === gid);
          const group = groups.group(gid);
          if (members.length === 0) {
            if (group !== undefined) throw new Error(`${gid}: a group without members`);
            continue;
          }
          if (!group) throw new Error(`${gid}: no group for ${members.length} members`);
          const got = new Map(group.members);
          if (got.size !== members.length || members.some(([n, v]) => got.get(n) !== v.source)) throw new Error(`${gid}: members ${JSON.stringify([...got])}`);
          const agents = members.filter(([, v]) => v.source === 'agent').length;
          if (group.sources.agent !== agents || group.sources.kubelet !== members.length - agents) throw new Error(`${gid}: sources ${JSON.stringify(group.sources)}`);
        }
        for (const n of ['a', 'b', 'c', 'd']) {
          const mine = model.get(n);
          const shared = mine !== undefined && [...model.values()].filter((v) => v.id === mine.id).length > 1;
          if (groups.duplicateOf(n) !== (shared ? mine.id : undefined)) throw new Error(`${n}: duplicateOf ${groups.duplicateOf(n)}`);
          if (JSON.stringify(groups.entry(n)) !== JSON.stringify(mine)) throw new Error(`${n}: entry`);
        }
      }
    }),
    { seed: propertySeed(t), numRuns: 500 },
  );
  t.pass('500 random sequences');
});

t.test('a group shrinking to one and growing again keeps its counts', async (t) => {
  const groups = new MachineIdGroups();
  t.same(groups.set('a', 'x', 'agent'), ['x']);
  t.same(groups.set('b', 'x', 'kubelet'), ['x']);
  t.equal(groups.duplicateOf('a'), 'x');
  t.same(groups.group('x')?.sources, { agent: 1, kubelet: 1 });
  t.same(groups.set('a', undefined, 'agent'), ['x'], 'a leaves');
  t.equal(groups.duplicateOf('b'), undefined, 'b alone is no duplicate');
  t.same([...groups.group('x')!.members], [['b', 'kubelet']]);
  t.same(groups.set('c', 'x', 'agent'), ['x']);
  t.same(groups.group('x')?.sources, { agent: 1, kubelet: 1 });
  t.same([...groups.group('x')!.members.keys()].sort(), ['b', 'c']);
});
