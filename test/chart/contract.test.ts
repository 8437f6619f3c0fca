// The environment the chart sets is the one the programs read: every variable the chart gives
// the agent is an option of nodeprep-agent (agent/cli.ts), and every one it gives the
// aggregator is in its config schema (aggregator/config.ts).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { only, render, repoRoot } from '../support/helm.js';
import { scenarios } from './scenarios.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const agentVars = new Set([...readFileSync(join(repoRoot, 'agent', 'cli.ts'), 'utf8').matchAll(/opt\([^)]*'([A-Z_]+)'\)/g)].map((m) => m[1]));
const aggregatorSrc = readFileSync(join(repoRoot, 'aggregator', 'config.ts'), 'utf8');
const schemaBody = aggregatorSrc.slice(aggregatorSrc.indexOf('z\n  .object({'), aggregatorSrc.indexOf('.transform('));
const aggregatorVars = new Set([...schemaBody.matchAll(/^\s{4}([A-Z_]+):/gm)].map((m) => m[1]));

t.ok(agentVars.has('NODE_NAME') && agentVars.has('HEALTH_FILE'), 'found the agent\'s variables in agent/cli.ts');
t.ok(aggregatorVars.has('PORT') && aggregatorVars.has('AUTH_TOKEN_FILE'), 'found the aggregator\'s variables in aggregator/config.ts');

for (const { name, opts } of scenarios) {
  t.test(name, async (t) => {
    const objects = render(opts);
    const extra = new Set(['NODE_OPTIONS']); // from agent.extraEnv in a ci file, for node itself
    const ds = objects.find((o) => o.kind === 'DaemonSet');
    if (ds) {
      for (const e of ds.spec.template.spec.containers[0].env as Any[]) {
        if (!extra.has(e.name)) t.ok(agentVars.has(e.name), `agent reads ${e.name}`);
      }
    }
    const deploy = objects.find((o) => o.kind === 'Deployment');
    if (deploy) {
      const c = deploy.spec.template.spec.containers[0];
      const cm = only(objects, 'ConfigMap', '-aggregator');
      const names = [...((c.env ?? []) as Any[]).map((e) => e.name as string), ...Object.keys(cm.data)];
      for (const n of names) t.ok(aggregatorVars.has(n), `aggregator reads ${n}`);
    }
  });
}
