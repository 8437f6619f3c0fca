// One seed for the property tests of a test file: fresh every run and printed, so that a failure
// can be replayed with FC_SEED=<seed> (fast-check's message adds the path to the smallest failing
// case). A fixed seed would test the same few hundred cases forever.
import type { Test } from 'tap';

export function propertySeed(t: Pick<Test, 'comment'>): number {
  const given = process.env.FC_SEED;
  let seed: number;
  if (given === undefined || given === '') seed = (Date.now() ^ Math.floor(Math.random() * 2 ** 31)) | 0;
  else {
    seed = Number(given);
    if (!Number.isInteger(seed) || seed !== (seed | 0)) throw new Error(`FC_SEED=${given} is not a 32-bit integer`);
  }
  t.comment(`fast-check seed ${seed} (replay: FC_SEED=${seed})`);
  return seed;
}
