// npm run bench: every benchmark, one after the other, figures and ratios on stdout.
import { benchAgent } from './agent.js';
import { benchParser } from './parser.js';

const only = process.argv[2];
const benches: Record<string, () => Promise<void>> = {
  parser: benchParser,
  agent: benchAgent,
  aggregator: async () => (await import('./aggregator.js')).benchAggregator(),
};
for (const [name, run] of Object.entries(benches)) {
  if (only && only !== name) continue;
  await run();
}
