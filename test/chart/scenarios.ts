// The value sets every chart test renders: the defaults and each file in charts/nodeprep/ci/.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { chartDir, type RenderOptions } from '../support/helm.js';

export interface Scenario {
  name: string;
  opts: RenderOptions;
}

export const ciFiles: string[] = readdirSync(join(chartDir, 'ci'))
  .filter((f) => f.endsWith('-values.yaml'))
  .sort();

export const scenarios: Scenario[] = [
  { name: 'default values', opts: {} },
  ...ciFiles.map((f) => ({ name: `ci/${f}`, opts: { valuesFiles: [`ci/${f}`] } })),
];
