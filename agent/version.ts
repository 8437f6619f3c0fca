// The agent's version is the package's, read once at start-up. The module runs from agent/
// (tests, TypeScript sources) or from dist/agent/ (the build), so look one and two levels up.
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

export const AGENT_VERSION: string = readVersion();
