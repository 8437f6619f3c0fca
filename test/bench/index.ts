// npm run bench: every benchmark, one after the other, figures and ratios on stdout.
// `node dist/test/bench/index.js <name>` runs one of them. To add one, add its entry here.
const benches: Record<string, () => Promise<void>> = {
  parser: async () => (await import('./parser.js')).benchParser(),
  agent: async () => (await import('./agent.js')).benchAgent(),
  images: async () => (await import('./images.js')).benchImages(),
  aggregator: async () => (await import('./aggregator.js')).benchAggregator(),
  'cluster-view': async () => (await import('./cluster-view.js')).benchClusterView(),
};

const only = process.argv[2];
if (only && !(only in benches)) throw new Error(`no benchmark ${only}: ${Object.keys(benches).join(', ')}`);
for (const [name, run] of Object.entries(benches)) {
  if (only && only !== name) continue;
  await run();
}
