// Kubernetes quantities: every form the API server accepts, compared exactly.
// The property test draws a fresh seed each run and prints it (replay: FC_SEED=<seed>).
import fc from 'fast-check';
import t from 'tap';
import { compareQuantities, parseQuantity, quantityToNumber } from '../../aggregator/illumio/quantity.js';

const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : (Date.now() ^ Math.floor(Math.random() * 2 ** 31)) | 0;
t.comment(`fast-check seed ${seed} (replay: FC_SEED=${seed})`);

const cmp = (a: string, b: string) => compareQuantities(parseQuantity(a), parseQuantity(b));

t.test('equal amounts written differently', async (t) => {
  const same: [string, string][] = [
    ['500m', '0.5'],
    ['1', '1000m'],
    ['.5', '500m'],
    ['1.', '1'],
    ['+2', '2'],
    ['0.1', '100m'], // 0.1 is no exact binary fraction: exactness matters
    ['0.3', '300m'],
    ['600Mi', '629145600'],
    ['3Gi', '3072Mi'],
    ['1.5Gi', '1536Mi'],
    ['1.5Mi', '1572864'],
    ['700M', '700000000'],
    ['1e9', '1G'],
    ['1E3', '1k'],
    ['1e-3', '1m'],
    ['1E', '1000P'], // E alone is exa; E followed by digits is an exponent
    ['100n', '0.0000001'],
    ['5u', '5000n'],
    ['1Ki', '1024'],
    ['1Ei', '1024Pi'],
    ['0', '0m'],
  ];
  for (const [a, b] of same) t.equal(cmp(a, b), 0, `${a} = ${b}`);
});

t.test('order', async (t) => {
  const less: [string, string][] = [
    ['499m', '0.5'],
    ['1.5', '2'],
    ['1Gi', '1073741825'],
    ['1073741823', '1Gi'],
    ['1G', '1Gi'],
    ['700M', '700Mi'],
    ['-1', '0'],
    ['1e8', '1Gi'],
    ['599Mi', '600Mi'],
  ];
  for (const [a, b] of less) {
    t.equal(cmp(a, b), -1, `${a} < ${b}`);
    t.equal(cmp(b, a), 1, `${b} > ${a}`);
  }
  t.equal(quantityToNumber(parseQuantity('600Mi')), 629145600);
  t.equal(quantityToNumber(parseQuantity('250m')), 0.25);
});

t.test('what the API server would refuse is refused, with a reason', async (t) => {
  for (const text of ['', ' 1', '1 ', '1 Mi', '1mi', '1MI', '1KiB', '1MB', '1e', '1e+', 'e3', '1.2.3', 'abc', '1Mi1', '..5', '1K', 'Mi', '-', '1e999', '9'.repeat(80)]) {
    t.throws(() => parseQuantity(text), RangeError, `${JSON.stringify(text.slice(0, 20))} refused`);
  }
  t.throws(() => parseQuantity('1mi'), /not a Kubernetes quantity/);
});

t.test('property: milli-units and units agree with integer arithmetic', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10_000_000 }), fc.integer({ min: 0, max: 10_000_000 }), (a, b) => {
      const expected = Math.sign(a - b);
      return cmp(`${a}m`, `${b}m`) === expected && cmp(`${a}Mi`, `${b * 1024}Ki`) === expected && cmp(`${a}`, `${a * 1000}m`) === 0;
    }),
    { numRuns: 300, seed },
  );
  t.pass('300 pairs');
});
