// A lane's places and line on their own (kube-api.test.ts shows them against the real API
// server): first come, first served; a request that gives up leaves the line and its place goes
// to the next; a full line refuses at once.
import t from 'tap';
import { KubeApiBusyError, Lane } from '../../aggregator/cluster/lanes.js';

const settled = () => new Promise((r) => setImmediate(r));

t.test('places in order of arrival, the line bounded', async (t) => {
  const lane = new Lane('test', { inFlight: 2, waiting: 2 });
  const never = new AbortController().signal;
  const admitted: string[] = [];
  const enter = (name: string, signal = never) => lane.enter(signal).then(() => void admitted.push(name));
  const a = enter('a');
  const b = enter('b');
  await settled();
  t.same(admitted, ['a', 'b'], 'the two places at once');
  const giveUp = new AbortController();
  const c = enter('c', giveUp.signal);
  const d = enter('d');
  await t.rejects(lane.enter(never), KubeApiBusyError, 'a third in line is refused at once');
  t.equal(lane.waiting, 2);
  giveUp.abort(new Error('deadline'));
  await t.rejects(c, { message: 'deadline' }, 'one gives up: it fails with its signal\'s reason');
  t.equal(lane.waiting, 1, 'and leaves the line');
  lane.leave();
  await settled();
  t.same(admitted, ['a', 'b', 'd'], 'the freed place goes to the next in line');
  t.equal(lane.busy, 2, 'handed over, not freed');
  lane.leave();
  lane.leave();
  t.equal(lane.busy, 0, 'freed when nobody waits');
  await Promise.all([a, b, d]);
});

t.test('a request whose signal has already fired does not take a place', async (t) => {
  const lane = new Lane('test', { inFlight: 1, waiting: 1 });
  const fired = new AbortController();
  fired.abort(new Error('too late'));
  await t.rejects(lane.enter(fired.signal), { message: 'too late' });
  t.equal(lane.busy, 0);
});
