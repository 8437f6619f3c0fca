// Schemathesis (PyPI), the independent fuzzer that holds the aggregator to its published contract
// (GET /openapi.json). test/contract/install-schemathesis.sh installs the pinned version into a
// venv outside the repository (.ci/run calls it); the tests only look for it there.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const INSTALL = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'contract', 'install-schemathesis.sh');

/** The venv's bin folder when the pinned Schemathesis is installed, else why not. */
function installed(): { bin: string } | { why: string } {
  const res = spawnSync('bash', [INSTALL, '--installed'], { encoding: 'utf8' });
  if (res.status === 0) return { bin: res.stdout.trim() };
  return { why: `Schemathesis is not installed (bash test/contract/install-schemathesis.sh: ${res.stderr.trim() || `exit ${res.status}`})` };
}

/** The reason to skip, or undefined; in CI (CI=true) a missing Schemathesis is an error, never a skip. */
export function requireSchemathesis(): string | undefined {
  const found = installed();
  if ('bin' in found) return undefined;
  if (process.env.CI === 'true') throw new Error(`CI=true and the contract test cannot run: ${found.why}`);
  return found.why;
}

export interface SchemathesisRun {
  status: number | null;
  output: string;
  // From the closing summary: test cases generated, and failures found (0 when none are listed).
  cases: number;
  failures: number;
}

/** `schemathesis run <schema> ...args`, bounded in time; its output, and its summary as figures. */
export async function schemathesis(schemaUrl: string, args: string[], timeoutMs: number): Promise<SchemathesisRun> {
  const found = installed();
  if (!('bin' in found)) throw new Error(found.why);
  // Its working directory takes the cache it writes (.schemathesis/): a temporary one, not the repository.
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-schemathesis-'));
  const child = spawn(path.join(found.bin, 'schemathesis'), ['run', schemaUrl, '--no-color', ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', LANG: 'C.UTF-8', SCHEMATHESIS_TELEMETRY: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  clearTimeout(timer);
  rmSync(cwd, { recursive: true, force: true });
  const cases = Number(/(\d+) generated/.exec(output)?.[1] ?? 0);
  const failures = Number(/(\d+) failures?\b/i.exec(output.slice(output.lastIndexOf('SUMMARY')))?.[1] ?? 0);
  return { status, output, cases, failures };
}
