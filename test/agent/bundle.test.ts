// The agent as it ships: dist/nodeprep-agent.mjs, the one file Dockerfile.agent puts in the
// image (issue 13, item 2). Its dependency closure, read from esbuild's metafile, holds the
// agent, the zod-free part of protocol/, and pino and undici with their dependencies; nothing of
// the aggregator. And it runs alone: copied into an empty directory, with the node flags of its
// #! line, it collects and delivers a report over HTTPS, as the chart's agents do by default.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { NodeReport } from '../../protocol/report.js';
import { AGENT_BIN, HOST_FIXTURES, IPTABLES_FIXTURES, ROOT, agentNodeFlags, expected } from '../support/fixtures.js';
import { testCa } from '../support/tls.js';

interface Metafile {
  inputs: Record<string, { imports: { path: string; external?: boolean }[] }>;
  outputs: Record<string, { inputs: Record<string, unknown> }>;
}
interface Lockfile {
  packages: Record<string, { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; dev?: boolean }>;
}

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as Lockfile;
const meta = JSON.parse(readFileSync(path.join(ROOT, 'dist/nodeprep-agent.meta.json'), 'utf8')) as Metafile;

// The agent's own runtime packages (agent/run.ts logs with pino, agent/sender.ts sends with undici).
const AGENT_PACKAGES = ['pino', 'undici'];

/** Every package a set of packages needs, by the lock file (node_modules/<name>, hoisted). */
function closure(names: string[]): Set<string> {
  const out = new Set<string>();
  const queue = [...names];
  while (queue.length) {
    const name = queue.pop()!;
    if (out.has(name)) continue;
    out.add(name);
    const entry = lock.packages[`node_modules/${name}`];
    queue.push(...Object.keys({ ...entry?.dependencies, ...entry?.optionalDependencies }));
  }
  return out;
}

/** The package a bundled file comes from ("node_modules/@a/b/lib/x.js" -> "@a/b"), or undefined for our own files. */
function packageOf(input: string): string | undefined {
  return /node_modules\/((?:@[^/]+\/)?[^/]+)\/[^]*$/.exec(input)?.[1];
}

const bundled = Object.keys(Object.values(meta.outputs)[0]?.inputs ?? {});
const bundledPackages = new Set(bundled.map(packageOf).filter((p) => p !== undefined));

t.test('the bundle holds the agent, pino and undici, and nothing of the aggregator', async (t) => {
  t.ok(bundled.includes('agent/main.ts') && bundled.includes('agent/sender.ts') && bundled.includes('agent/run.ts'), 'the agent, run mode included');
  const ownFiles = bundled.filter((f) => packageOf(f) === undefined && !f.includes(':'));
  t.same(ownFiles.filter((f) => !/^(agent|protocol)\//.test(f)), [], 'of this repository, only agent/ and protocol/');

  const aggregatorPackages = Object.keys(pkg.dependencies).filter((d) => !AGENT_PACKAGES.includes(d));
  t.ok(aggregatorPackages.includes('fastify') && aggregatorPackages.includes('zod'), `the aggregator's packages: ${aggregatorPackages.join(', ')}`);
  const agentClosure = closure(AGENT_PACKAGES);
  // Packages only the aggregator needs: its own and everything they pull in that the agent's do not.
  const aggregatorOnly = [...closure(aggregatorPackages)].filter((p) => !agentClosure.has(p));
  t.same(aggregatorOnly.filter((p) => bundledPackages.has(p)), [], `none of the ${aggregatorOnly.length} packages only the aggregator needs is in the bundle`);
  for (const p of ['fastify', '@fastify/swagger', 'zod', 'prom-client', 'close-with-grace', '@kubernetes/client-node', 'fastify-type-provider-zod']) {
    t.notOk(bundledPackages.has(p), `no ${p}`);
  }
  t.same([...bundledPackages].filter((p) => !agentClosure.has(p)), [], `every bundled package (${[...bundledPackages].sort().join(', ')}) is pino's or undici's`);
  t.ok(bundledPackages.has('pino') && bundledPackages.has('undici'), 'pino and undici are in it');

  // protocol/ is shared with the aggregator; the agent takes only what needs no zod (its
  // type-only imports of protocol/report.ts leave no trace in the bundle).
  const zodImports = Object.entries(meta.inputs).filter(([, v]) => v.imports.some((i) => i.path === 'zod' || packageOf(i.path) === 'zod'));
  t.same(zodImports.map(([f]) => f), [], 'no bundled file imports zod');
  t.notOk(bundled.includes('protocol/report.ts'), 'protocol/report.ts (the zod schemas) is not bundled');
});

const DUMP = 'calico-append.v4.nft.txt';

t.test('the bundle runs alone: an empty directory, the flags of its #! line, a report delivered over HTTPS', async (t) => {
  const flags = agentNodeFlags();
  t.ok(flags.length > 0, `node flags from the #! line: ${flags.join(' ')}`);
  // No node_modules anywhere above it: what the image gives it.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-bundle-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'app'));
  const bin = path.join(dir, 'app', 'nodeprep-agent.mjs');
  copyFileSync(AGENT_BIN, bin);

  const ca = testCa(t);
  const bodies: string[] = [];
  const versions: string[] = [];
  // A server that offers HTTP/2 too: the bundle carries no HTTP/2 client (scripts/bundle.mjs),
  // so the agent must ask for HTTP/1.1.
  const server = http2.createSecureServer({ ...ca.server('IP:127.0.0.1'), allowHTTP1: true }, (req, res) => {
    versions.push(req.httpVersion);
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => {
      bodies.push(body);
      res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const child = spawn(process.execPath, [...flags, bin, 'run', '--once', '--node-name', 'n1', '--host-root', path.join(HOST_FIXTURES, 'unique'),
    '--from-dump', `ipv4/nft=${path.join(IPTABLES_FIXTURES, DUMP)}`, '--aggregator-url', url, '--ca-file', ca.caFile, '--log-level', 'warn'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 0, 'run --once exits 0: the report was delivered', { stderr });
  t.equal(bodies.length, 1, 'one report received');
  t.same(versions, ['1.1'], 'over HTTP/1.1, though the server offers h2');
  const parsed = NodeReport.safeParse(JSON.parse(bodies[0] ?? '{}'));
  t.ok(parsed.success, 'it is a valid NodeReport', { issues: parsed.error?.issues.slice(0, 3) });
  t.equal(parsed.data?.agent.version, pkg.version, 'with the version built into the bundle (the image has no package.json)');
  t.equal(parsed.data?.iptables[0]?.verdict, expected.iptables[DUMP]?.verdict, 'and the verdict of the ruleset it read');
});
