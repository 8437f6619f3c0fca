// Aggregator benchmark (design.md section 8; issue 13 items 4 and 5). Prints figures; asserts nothing.
//  1. Request rate of POST /v1/reports (a busy node's report, rotating over 5,000 node names)
//     against a bare fastify route that parses the same body and does nothing, same run, same
//     load generator: heartbeats (the facts repeated, a new collectedAt) and reports that all
//     changed. Target ratio >= 0.5, stretch 0.8. Beside each rate, the server's CPU time a
//     request (all its threads, /proc): what each route costs, whatever the load generator did.
//  2. RSS of the aggregator holding 100,000 distinct nodes, and after ten full paginated walks
//     of GET /v1/nodes (target < 512 MiB); the latency of GET /v1/findings at that size.
// Each server runs in its own child process on loopback, the aggregator with the node flags of
// its #! line (as its image runs it); autocannon runs in this one.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { request } from 'undici';
import { busyNodeReport, buildReport, machineIdFor } from '../support/reports.js';
import { CLOCK_TICKS_PER_S, procMemory, procStat } from '../support/proc.js';
import { shebangFlags } from '../../scripts/shebang.js';

// autocannon ships no types (and @types/autocannon is not a dependency): the part used here.
interface AutocannonRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (request: AutocannonRequest) => AutocannonRequest;
}
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p99: number };
  non2xx: number;
  errors: number;
  '2xx': number;
}
type Autocannon = (options: { url: string; connections: number; duration?: number; amount?: number; requests: AutocannonRequest[] }) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const TOKEN = 'bench-token-0123456789abcdef';
const ROTATING_NODES = 5_000;
const LOADED_NODES = 100_000;
const DURATION_S = 10;
const WARMUP_S = 3;
const CONNECTIONS = 16;
const here = fileURLToPath(import.meta.url);
const aggregatorMain = join(here, '..', '..', '..', 'nodeprep-aggregator.mjs');
// Run as the image runs it: with the node flags of its #! line.
const aggregatorArgs = [...shebangFlags(aggregatorMain), aggregatorMain];

type Holes = { node: string; machineId: string; collectedAt: string; version: string };

/** A report as a template with holes for the parts that differ between requests. */
function template(calico: 'append' | 'insert'): (holes: Holes) => string {
  const report = calico === 'append'
    ? busyNodeReport('@@node@@', '@@machineId@@')
    : buildReport({ name: '@@node@@', machineId: '@@machineId@@', calico: 'insert', services: 5000, pods: 110, cluster: 'prod-eu-1' });
  report.collectedAt = '@@collectedAt@@';
  report.agent.version = '@@version@@';
  const text = JSON.stringify(report);
  const hole = /@@(node|machineId|collectedAt|version)@@/g;
  const parts = text.split(hole); // odd indexes are hole names
  return (holes) => {
    let out = '';
    for (let i = 0; i < parts.length; i++) out += i % 2 === 0 ? parts[i]! : holes[parts[i] as keyof Holes];
    return out;
  };
}

interface Server {
  child: ChildProcess;
  url: string;
}

/** Starts a child and resolves with the URL it reports on stdout. */
function start(args: string[], env: NodeJS.ProcessEnv): Promise<Server> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
    lines.on('line', (line) => {
      const match = /(http:\/\/127\.0\.0\.1:\d+)/.exec(line);
      if (match) resolve({ child, url: match[1]! });
    });
  });
}

async function stop(server: Server): Promise<void> {
  server.child.removeAllListeners('exit');
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  await exited;
}

async function rate(server: Server, body: (n: number) => string, duration: number): Promise<{ rps: number; non2xx: number; errors: number; p99: number; cpuUs: number }> {
  let next = 0;
  const pid = server.child.pid!;
  const ticksBefore = procStat(pid)?.own ?? 0;
  const result = await autocannon({
    url: `${server.url}/v1/reports`,
    connections: CONNECTIONS,
    duration,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
        setupRequest: (req) => ({ ...req, body: body(next++) }),
      },
    ],
  });
  const cpuSeconds = ((procStat(pid)?.own ?? ticksBefore) - ticksBefore) / CLOCK_TICKS_PER_S;
  return { rps: result.requests.average, non2xx: result.non2xx, errors: result.errors, p99: result.latency.p99, cpuUs: (cpuSeconds * 1e6) / Math.max(1, result.requests.total) };
}

const rssMiB = (pid: number): number => (procMemory(pid)?.rssKiB ?? 0) / 1024;

async function timeGet(url: string, times: number): Promise<{ medianMs: number; maxMs: number; bytes: number }> {
  const samples: number[] = [];
  let bytes = 0;
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    const res = await request(url);
    const body = await res.body.arrayBuffer();
    samples.push(performance.now() - t0);
    bytes = body.byteLength;
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode}`);
  }
  samples.sort((a, b) => a - b);
  return { medianMs: samples[Math.floor(samples.length / 2)]!, maxMs: samples[samples.length - 1]!, bytes };
}

export async function benchAggregator(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'nodeprep-bench-'));
  const tokenFile = join(dir, 'token');
  // The reports name cluster prod-eu-1: the shared token is bound to it.
  writeFileSync(tokenFile, `${TOKEN} prod-eu-1\n`);
  const appendReport = template('append');
  const insertReport = template('insert');
  const names = Array.from({ length: ROTATING_NODES }, (_, i) => `worker-${String(i).padStart(5, '0')}.prod-eu-1.example.internal`);
  const ids = names.map((n) => machineIdFor(n));
  const epoch = Date.now();
  const at = (n: number) => new Date(epoch + n).toISOString();
  // Steady state: each node repeats its facts (a heartbeat); only collectedAt is new.
  const heartbeat = (n: number) => appendReport({ node: names[n % ROTATING_NODES]!, machineId: ids[n % ROTATING_NODES]!, collectedAt: at(n), version: '0.1.0' });
  // Worst case: every report differs from the node's previous one (here in agent.version), so
  // each is analysed, diffed and compressed.
  const changed = (n: number) => appendReport({ node: names[n % ROTATING_NODES]!, machineId: ids[n % ROTATING_NODES]!, collectedAt: at(n), version: `0.1.${n}` });
  console.log(`aggregator bench: report ${heartbeat(0).length} bytes, ${ROTATING_NODES} node names, ${CONNECTIONS} connections, ${DURATION_S} s per run (+${WARMUP_S} s warm-up)`);

  const env = { HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', AUTH_TOKEN_FILE: tokenFile, NODE_TTL_SECONDS: '3600', CLUSTER_VIEW: 'off' };
  const bare = await start([here, '--serve-bare'], {});
  const aggregator = await start(aggregatorArgs, env);
  try {
    await rate(bare, heartbeat, WARMUP_S);
    await rate(aggregator, changed, WARMUP_S);
    const bareRate = await rate(bare, heartbeat, DURATION_S);
    const aggRate = await rate(aggregator, heartbeat, DURATION_S);
    // Each node's latest report and collectedAt held, after heartbeats of all of them.
    const heartbeatRss = rssMiB(aggregator.child.pid!);
    const aggChanged = await rate(aggregator, changed, DURATION_S);
    const line = (name: string, r: typeof bareRate) =>
      `  ${name.padEnd(28)} ${r.rps.toFixed(0).padStart(7)} req/s  server CPU ${r.cpuUs.toFixed(0).padStart(3)} us a request  p99 ${r.p99} ms  non-2xx ${r.non2xx}  errors ${r.errors}`;
    console.log(line('bare fastify route', bareRate));
    console.log(line('POST /v1/reports heartbeats', aggRate));
    console.log(line('POST /v1/reports all changed', aggChanged));
    const ratio = aggRate.rps / bareRate.rps;
    const changedRatio = aggChanged.rps / bareRate.rps;
    const verdict = (r: number) => (r >= 0.8 ? 'OK, stretch met' : r >= 0.5 ? 'OK' : 'BELOW TARGET');
    console.log(`  ratio (heartbeats) ${ratio.toFixed(2)} (target >= 0.5, stretch 0.8) ${verdict(ratio)}`);
    console.log(`  ratio (all changed) ${changedRatio.toFixed(2)} (target >= 0.5, stretch 0.8) ${verdict(changedRatio)}`);
    console.log(`  aggregator RSS after the heartbeats of ${ROTATING_NODES} nodes: ${heartbeatRss.toFixed(0)} MiB`);
  } finally {
    await stop(bare);
    await stop(aggregator);
  }

  // 100,000 nodes in a fresh aggregator: 1 in 100 in Insert mode (a CALICO_MODE_MIXED finding
  // listing 1,000 nodes, plus their own findings), 1 in 1,000 sharing its neighbour's machine ID.
  const loaded = await start(aggregatorArgs, env);
  try {
    let i = 0;
    const t0 = performance.now();
    const result = await autocannon({
      url: `${loaded.url}/v1/reports`,
      connections: CONNECTIONS,
      amount: LOADED_NODES,
      requests: [
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
          setupRequest: (req) => {
            const n = i++;
            const name = `node-${String(n).padStart(6, '0')}.example.internal`;
            const machineId = machineIdFor(n % 1000 === 1 ? `node-${n - 1}` : `node-${n}`);
            return { ...req, body: (n % 100 === 50 ? insertReport : appendReport)({ node: name, machineId, collectedAt: at(n), version: '0.1.0' }) };
          },
        },
      ],
    });
    const seconds = (performance.now() - t0) / 1000;
    console.log(`loaded ${LOADED_NODES} nodes in ${seconds.toFixed(1)} s (${result['2xx']} accepted, ${result.non2xx} refused)`);
    const rss = rssMiB(loaded.child.pid!);
    console.log(`  aggregator RSS ${rss.toFixed(0)} MiB (target < 512 MiB) ${rss < 512 ? 'OK' : 'ABOVE TARGET'}`);
    const findings = await timeGet(`${loaded.url}/v1/findings`, 20);
    console.log(`  GET /v1/findings: median ${findings.medianMs.toFixed(1)} ms, max ${findings.maxMs.toFixed(1)} ms, ${(findings.bytes / 1024).toFixed(0)} KiB`);
    const critical = await timeGet(`${loaded.url}/v1/findings?severity=critical`, 20);
    console.log(`  GET /v1/findings?severity=critical: median ${critical.medianMs.toFixed(1)} ms, ${(critical.bytes / 1024).toFixed(0)} KiB`);
    const page = await timeGet(`${loaded.url}/v1/nodes`, 20);
    console.log(`  GET /v1/nodes (one page of 500): median ${page.medianMs.toFixed(1)} ms, ${(page.bytes / 1024).toFixed(0)} KiB`);
    // Ten full walks of every node, a page at a time, as a client following continue tokens.
    const walk0 = performance.now();
    let pages = 0;
    for (let walk = 0; walk < 10; walk++) {
      let next: string | undefined;
      let seen = 0;
      do {
        const res = await request(`${loaded.url}/v1/nodes?limit=500${next ? `&continue=${encodeURIComponent(next)}` : ''}`);
        const body = (await res.body.json()) as { nodes: unknown[]; continue?: string };
        seen += body.nodes.length;
        next = body.continue;
        pages++;
      } while (next);
      if (seen !== LOADED_NODES) throw new Error(`walk ${walk} saw ${seen} nodes, not ${LOADED_NODES}`);
    }
    const after = rssMiB(loaded.child.pid!);
    console.log(`  10 paginated walks of ${LOADED_NODES} nodes (${pages} pages) in ${((performance.now() - walk0) / 1000).toFixed(1)} s; RSS after ${after.toFixed(0)} MiB (target < 512 MiB) ${after < 512 ? 'OK' : 'ABOVE TARGET'}`);
  } finally {
    await stop(loaded);
  }
}

/** The baseline: fastify with its default JSON parser and the same body limit, doing nothing. */
async function serveBare(): Promise<void> {
  const { default: Fastify } = await import('fastify');
  const { BODY_LIMIT } = await import('../../aggregator/app.js');
  const app = Fastify({ bodyLimit: BODY_LIMIT });
  app.post('/v1/reports', async (_request, reply) => reply.code(202).send({}));
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  console.log(`bare listening at ${url}`);
  process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
}

if (process.argv[1] === here && process.argv[2] === '--serve-bare') void serveBare();
