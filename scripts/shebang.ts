// The node flags on a program's "#!/usr/bin/env -S node ..." line: the agent and the aggregator
// name their memory flags there, their images' ENTRYPOINTs pass the same, and tests and
// benchmarks run them with those flags, as their users do.
import { readFileSync } from 'node:fs';

export function shebangFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').slice(0, 512).split('\n', 1)[0] ?? '';
  return /^#!\/usr\/bin\/env -S node (.*)$/.exec(first)?.[1]?.trim().split(/\s+/) ?? [];
}
