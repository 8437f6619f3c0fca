// The agent's version is the package's, read once at start-up. The module runs from agent/
// (tests, TypeScript sources) or from dist/agent/ (the build), so look one and two levels up.
// The bundle that ships (scripts/bundle.mjs) has it built in instead: the agent image
// carries no package.json.
import { readFileSync } from 'node:fs';

function readVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'nodeprep' && pkg.version) return pkg.version;
    } catch {
      // not at this level
    }
  }
  return '0.0.0-unknown';
}

declare const NODEPREP_AGENT_VERSION: string | undefined;

export const AGENT_VERSION: string = typeof NODEPREP_AGENT_VERSION === 'string' ? NODEPREP_AGENT_VERSION : readVersion();
