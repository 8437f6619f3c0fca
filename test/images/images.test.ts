// Smoke tests of the two images the chart runs (issue 14), built from this working tree by
// images/build.sh (the first time: tools from apt, base image, both images, about 3 minutes on
// 2 cores; after that its layer cache makes it about 10 s) and run with podman the way
// charts/nodeprep runs them: the agent as root with NET_ADMIN and NET_RAW only, the aggregator as
// uid 1000, both on a read-only root filesystem. The only networks used are `--network none` and
// network namespaces this file creates; no bridge network (podman's default would change the
// host's firewall), no address of the host's own network. Skipped, with the reason, where the
// images cannot be built (not root, no apt to install buildah and podman); with CI=true that is
// a failure instead.
import { readFileSync, readdirSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { calicoPositions, nodeCalicoMode } from '../../aggregator/detect/calico.js';
import type { Finding } from '../../protocol/findings.js';
import { NodeReport } from '../../protocol/report.js';
import { HOST_FIXTURES, IPTABLES_FIXTURES, ROOT, builtinTargetsOf, expected } from '../support/fixtures.js';
import { buildImages, eventually, fetchInNamespace, mustRun, podmanEnv, Scratch, type Built } from './podman.js';

const AGGREGATOR_PORT = 18080;
// Every package of the aggregator's that the agent does not load (issue 13).
const AGGREGATOR_ONLY = ['fastify', 'zod', 'prom-client', '@fastify/swagger'];
const AGGREGATOR_NAMES = /\bfastify\b|\bzod\b|prom-client|@fastify\/swagger/;
// The container settings of the chart's pods (charts/nodeprep/values.yaml securityContext).
const READ_ONLY = ['--read-only', '--read-only-tmpfs=false', '--security-opt', 'no-new-privileges'];
const AGENT_CAPS = ['--cap-drop', 'ALL', '--cap-add', 'NET_ADMIN', '--cap-add', 'NET_RAW'];
// Capability bits (linux/capability.h): CAP_NET_ADMIN 12, CAP_NET_RAW 13.
const NET_ADMIN_AND_RAW = (1n << 12n) | (1n << 13n);

const rulesOf = (name: string) => readFileSync(path.join(IPTABLES_FIXTURES, `${name}.rules`), 'utf8');

/** The targets of each built-in chain's rules in a report, keyed "table/chain", as builtinTargetsOf gives them. */
function reportTargets(report: NodeReport, family: string, backend: string): Map<string, string[]> {
  const set = report.iptables.find((s) => s.family === family && s.backend === backend);
  const out = new Map<string, string[]>();
  for (const table of set?.tables ?? []) {
    for (const chain of table.builtinChains) out.set(`${table.name}/${chain.name}`, chain.rules.map((r) => r.target).filter((x) => x !== ''));
  }
  return out;
}

function parseReport(t: Test, stdout: string): NodeReport | undefined {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    t.fail(`the agent printed no JSON report: ${stdout.slice(0, 500)}`);
    return undefined;
  }
  const parsed = NodeReport.safeParse(json);
  t.ok(parsed.success, 'the report passes the protocol schema', { issues: parsed.error?.issues.slice(0, 3) });
  return parsed.success ? parsed.data : undefined;
}

/** /proc/<pid>/status fields of a process in a container: Uid, Gid and the capability sets. */
function statusFields(text: string): Record<string, string> {
  return Object.fromEntries(text.split('\n').map((l) => l.split(':\t')).filter((p) => p.length === 2).map(([k, v]) => [k!, v!.trim()]));
}

/** The command the chart runs in a container, from its template's `command:` line. */
function chartCommand(template: string): string[] {
  const text = readFileSync(path.join(ROOT, 'charts/nodeprep/templates', template), 'utf8');
  const m = /^\s*command: (\[.*\])$/m.exec(text);
  if (!m) throw new Error(`no command: in ${template}`);
  return JSON.parse(m[1]!) as string[];
}

/** Every npm package anywhere in a mounted image: "name@version" by the folder it is in. */
function packagesIn(root: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (dir: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const full = path.join(dir, e.name);
      // A package is a folder in node_modules/, or in node_modules/@scope/.
      const inScope = path.basename(dir).startsWith('@') && path.basename(path.dirname(dir)) === 'node_modules';
      if (path.basename(dir) === 'node_modules' || inScope) {
        try {
          const pkg = JSON.parse(readFileSync(path.join(full, 'package.json'), 'utf8')) as { name?: string; version?: string };
          if (pkg.name) found.set(path.relative(root, full), `${pkg.name}@${pkg.version ?? '?'}`);
        } catch {
          // a scope folder (@fastify) or a folder without package.json: look inside
        }
      }
      walk(full);
    }
  };
  walk(root);
  return found;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

function duBytes(target: string): number {
  let total = 0;
  const walk = (p: string) => {
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(path.join(p, e));
    else if (st.isFile()) total += st.size;
  };
  walk(target);
  return total;
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

async function run(built: Built): Promise<void> {
  const env = podmanEnv();
  const scratch = new Scratch(env);
  t.teardown(() => scratch.cleanup());
  const { agent, aggregator } = built;
  for (const line of built.log) t.comment(line);

  t.test('the agent collects from a host-root fixture and a dump: read-only, no capabilities, no network', async (t) => {
    const cases = [
      { host: 'unique', dump: 'calico-insert.v4.nft', spec: 'ipv4/nft', mode: 'insert' },
      { host: 'uninitialized', dump: 'calico-append.v4.nft', spec: 'ipv4/nft', mode: 'append' },
      { host: 'missing', dump: 'calico-insert.v4.legacy', spec: 'ipv4/legacy', mode: 'insert' },
    ] as const;
    for (const c of cases) {
      const r = await scratch.podman([
        'run', '--rm', '--name', scratch.containerName(), '--network', 'none', '--cap-drop', 'ALL', ...READ_ONLY,
        '-v', `${path.join(HOST_FIXTURES, c.host)}:/host:ro`, '-v', `${IPTABLES_FIXTURES}:/dumps:ro`,
        agent.id, 'collect', '--host-root', '/host', '--node-name', 'image-dump', '--from-dump', `${c.spec}=/dumps/${c.dump}.txt`,
      ]);
      t.equal(r.status, 0, `${c.host} + ${c.dump}: collect exits 0`, { stderr: r.stderr.slice(-2000) });
      const report = parseReport(t, r.stdout);
      if (!report) continue;
      const want = expected.hosts[c.host]!;
      t.equal(report.machineId.etc.status, want.etc, `${c.host}: /etc/machine-id is ${want.etc}`);
      t.equal(report.machineId.dbus.status, want.dbus, `${c.host}: the D-Bus machine ID is ${want.dbus}`);
      t.equal(report.machineId.dbus.linkTarget, want.dbusLinkTarget, `${c.host}: the D-Bus link target`);
      const [family, backend] = c.spec.split('/') as [string, string];
      const set = report.iptables.find((s) => s.family === family && s.backend === backend);
      t.match(set, { source: 'dump', verdict: expected.iptables[`${c.dump}.txt`]!.verdict }, `${c.dump}: read as a ${c.spec} dump`);
      t.same(reportTargets(report, family, backend), builtinTargetsOf(rulesOf(c.dump)), `${c.dump}: every built-in chain's targets, in order`);
      t.equal(nodeCalicoMode(calicoPositions(report)), c.mode, `${c.dump}: Calico's hooks say ${c.mode} mode`);
      t.same(report.nftTables, [], 'a dump runs no nft');
      t.same(report.errors, [], 'no collection errors');
    }
  });

  t.test("the agent reads a namespace's live rules with the image's own iptables", async (t) => {
    const versions = await scratch.podman(['run', '--rm', '--name', scratch.containerName(), '--network', 'none', '--entrypoint', 'sh', agent.id, '-c', 'iptables --version; iptables-legacy --version; nft --version']);
    t.equal(versions.status, 0, 'the image has iptables, iptables-legacy and nft', { stderr: versions.stderr });
    for (const line of versions.stdout.trim().split('\n')) t.comment(`agent image: ${line}`);
    t.match(versions.stdout, /^iptables v[\d.]+ \(nf_tables\)$/m, 'iptables is the nf_tables variant');

    const ns = scratch.namespace();
    mustRun('ip', ['netns', 'exec', ns, 'iptables-nft-restore'], rulesOf('calico-insert.v4.nft'));
    const collect = (caps: string[]) =>
      scratch.podman(['run', '--rm', '--name', scratch.containerName(ns), '--network', 'host', ...caps, ...READ_ONLY,
        '-v', `${path.join(HOST_FIXTURES, 'unique')}:/host:ro`, agent.id, 'collect', '--host-root', '/host', '--node-name', 'image-live'], { netns: ns });

    const r = await collect(AGENT_CAPS);
    t.equal(r.status, 0, 'collect exits 0 with NET_ADMIN and NET_RAW', { stderr: r.stderr.slice(-2000) });
    const report = parseReport(t, r.stdout);
    if (report) {
      const v4 = report.iptables.find((s) => s.family === 'ipv4' && s.backend === 'nft');
      t.match(v4, { source: 'host', verdict: 'ok' }, 'iptables-nft-save ran in the container');
      t.same(reportTargets(report, 'ipv4', 'nft'), builtinTargetsOf(rulesOf('calico-insert.v4.nft')), "exactly the namespace's rules: every built-in chain's targets, in order");
      t.equal(nodeCalicoMode(calicoPositions(report)), 'insert', "Calico's hooks say insert mode");
      t.same(report.nftTables, [], 'nft: neither Calico\'s nor kube-proxy\'s nftables table in this namespace');
      t.same(report.errors, [], 'no collection errors');
    }

    const denied = await collect(['--cap-drop', 'ALL']);
    t.equal(denied.status, 0, 'without the two capabilities collect still reports');
    const deniedReport = parseReport(t, denied.stdout);
    t.match(JSON.stringify(deniedReport?.errors ?? []), /Permission denied|Operation not permitted/, 'and says iptables was refused: the capabilities are the ones it needs');
    t.notOk(deniedReport?.iptables.some((s) => s.ruleCount > 0), 'and reads no rule');
  });

  t.test('the agent runs as root with only NET_ADMIN and NET_RAW, with the command the chart gives it', async (t) => {
    const cfg = JSON.parse((await scratch.podman(['image', 'inspect', '--format', '{{json .Config}}', agent.id])).stdout) as { User?: string; Entrypoint?: string[]; Cmd?: string[] };
    t.equal(cfg.User, '0', 'the image runs as uid 0 (iptables-save needs it with CAP_NET_ADMIN)');
    t.same(cfg.Entrypoint, chartCommand('agent-daemonset.yaml'), "the image's ENTRYPOINT is the chart's command");
    t.same(cfg.Cmd, ['run'], 'and its CMD the chart\'s args');
    const r = await scratch.podman(['run', '--rm', '--name', scratch.containerName(), '--network', 'none', ...AGENT_CAPS, ...READ_ONLY, '--entrypoint', 'cat', agent.id, '/proc/self/status']);
    t.equal(r.status, 0, 'started with the chart\'s capability set', { stderr: r.stderr });
    const status = statusFields(r.stdout);
    t.equal(status.Uid?.split(/\s+/)[0], '0', 'uid 0');
    t.equal(BigInt(`0x${status.CapEff ?? ''}`), NET_ADMIN_AND_RAW, `CapEff ${status.CapEff}: NET_ADMIN and NET_RAW, nothing else`);
    t.equal(BigInt(`0x${status.CapBnd ?? ''}`), NET_ADMIN_AND_RAW, 'and nothing more can be gained (CapBnd)');
    t.equal(status.NoNewPrivs, '1', 'no new privileges (allowPrivilegeEscalation: false)');
  });

  t.test("the aggregator serves /healthz, takes the agent image's report, and stops on podman stop", async (t) => {
    const ns = scratch.namespace();
    mustRun('ip', ['netns', 'exec', ns, 'iptables-nft-restore'], rulesOf('calico-insert.v4.nft'));
    // The shared token, in folders the aggregator (uid 1000) and the agent (root) may read.
    const aggDir = scratch.dir();
    const agentDir = scratch.dir();
    const wrongDir = scratch.dir();
    const token = `image-test-${process.pid}-${Date.now()}`;
    writeFileSync(path.join(aggDir, 'tokens'), `${token}\n`);
    writeFileSync(path.join(agentDir, 'token'), `${token}\n`);
    writeFileSync(path.join(wrongDir, 'token'), 'not-the-token\n');
    for (const dir of [aggDir, agentDir, wrongDir]) {
      chmodSync(dir, 0o755);
      for (const f of readdirSync(dir)) chmodSync(path.join(dir, f), 0o444);
    }
    const name = scratch.containerName(ns);
    const started = await scratch.podman([
      'run', '--detach', '--name', name, '--network', 'host', '--cap-drop', 'ALL', ...READ_ONLY,
      '-e', 'CLUSTER_VIEW=off', '-e', `PORT=${AGGREGATOR_PORT}`, '-e', 'HOST=127.0.0.1', '-e', 'AUTH_TOKEN_FILE=/etc/nodeprep/tokens/tokens',
      '-v', `${aggDir}:/etc/nodeprep/tokens:ro`, aggregator.id,
    ], { netns: ns });
    t.equal(started.status, 0, 'the aggregator container starts', { stderr: started.stderr });
    const url = (p: string) => `http://127.0.0.1:${AGGREGATOR_PORT}${p}`;
    const logs = async () => (await scratch.podman(['logs', name])).stdout.slice(-3000);

    const health = await eventually('/healthz answers', 30, async () => {
      const res = await fetchInNamespace(ns, url('/healthz'));
      return res.status === 200 ? res : undefined;
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}; aggregator log: ${await logs()}`);
    });
    t.same(JSON.parse(health.body), { status: 'ok' }, '/healthz says ok');

    const agentRun = (tokenDir: string) =>
      scratch.podman([
        'run', '--rm', '--name', scratch.containerName(ns), '--network', 'host', ...AGENT_CAPS, ...READ_ONLY,
        '-v', `${path.join(HOST_FIXTURES, 'unique')}:/host:ro`, '-v', `${tokenDir}:/var/run/secrets/nodeprep:ro`,
        agent.id, 'run', '--once', '--host-root', '/host', '--node-name', 'image-node',
        '--aggregator-url', `http://127.0.0.1:${AGGREGATOR_PORT}`, '--token-file', '/var/run/secrets/nodeprep/token',
      ], { netns: ns });
    const refused = await agentRun(wrongDir);
    t.not(refused.status, 0, 'with a token the aggregator does not know, run --once fails (nothing delivered)');
    const sent = await agentRun(agentDir);
    t.equal(sent.status, 0, 'run --once delivers its report', { stderr: sent.stderr.slice(-2000), stdout: sent.stdout.slice(-2000) });

    const nodes = await fetchInNamespace(ns, url('/v1/nodes'));
    t.same((JSON.parse(nodes.body) as { nodes: { name: string }[] }).nodes.map((n) => n.name), ['image-node'], 'the aggregator knows the node, and only it');
    const findings = JSON.parse((await fetchInNamespace(ns, url('/v1/findings'))).body) as { findings: Finding[] };
    t.ok(findings.findings.some((f) => f.code === 'CALICO_INSERT_MODE' && f.nodes.includes('image-node')), "CALICO_INSERT_MODE for the node: the live rules went all the way", { findings: findings.findings.map((f) => `${f.code} ${f.nodes.join(',')}`) });

    // The chart's pod: uid 1000 from the image (podman is given no --user), read-only root.
    const proc = await scratch.podman(['exec', name, 'cat', '/proc/1/status']);
    const status = statusFields(proc.stdout);
    t.equal(status.Uid?.split(/\s+/)[0], '1000', 'the aggregator process runs as uid 1000');
    t.equal(status.Gid?.split(/\s+/)[0], '1000', 'gid 1000');
    t.equal(BigInt(`0x${status.CapEff ?? '1'}`), 0n, 'with no capability');
    const write = await scratch.podman(['exec', name, 'sh', '-c', 'touch /app/x || touch /tmp/x']);
    t.not(write.status, 0, 'it cannot write to its root filesystem');
    t.match(write.stderr, /Read-only file system/, 'because it is read-only');
    const cfg = JSON.parse((await scratch.podman(['image', 'inspect', '--format', '{{json .Config}}', aggregator.id])).stdout) as { User?: string; Entrypoint?: string[] };
    t.equal(cfg.User, '1000:1000', 'the image says uid 1000 by number (runAsNonRoot can check it)');
    t.same(cfg.Entrypoint, chartCommand('aggregator-deployment.yaml'), "the image's ENTRYPOINT is the chart's command");

    const stop = await scratch.podman(['stop', '--time', '10', name], { netns: ns });
    t.equal(stop.status, 0, 'podman stop returns', { stderr: stop.stderr });
    t.comment(`podman stop took ${Math.round(stop.ms)} ms (SIGTERM; SIGKILL after 10 s)`);
    const state = JSON.parse((await scratch.podman(['inspect', '--format', '{{json .State}}', name])).stdout) as { ExitCode: number; Status: string };
    t.equal(state.ExitCode, 0, 'the aggregator exits 0 on SIGTERM (it was not killed)');
    t.match(await logs(), /"msg":"shutting down"/, 'after logging its shutdown');
  });

  t.test("the agent image carries the agent's runtime only", async (t) => {
    const mount = await scratch.podman(['image', 'mount', agent.id]);
    t.equal(mount.status, 0, 'the image mounts', { stderr: mount.stderr });
    const root = mount.stdout.trim();
    try {
      const packages = packagesIn(root);
      const app = [...packages].filter(([where]) => where.startsWith('app/'));
      const base = [...packages].filter(([where]) => !where.startsWith('app/'));
      const appEntries = readdirSync(path.join(root, 'app')).map((e) => `${e} (${mb(duBytes(path.join(root, 'app', e)))})`);
      t.comment(`agent image /app: ${appEntries.join(', ')}`);
      const listed = app.length <= 20 ? app.map(([, id]) => id).sort().join(' ') : `${app.slice(0, 20).map(([, id]) => id).sort().join(' ')} ...`;
      t.comment(`agent image: ${app.length} npm packages under /app${app.length ? `: ${listed}` : ''}`);
      t.comment(`agent image: ${base.length} npm packages elsewhere (the base image's npm and its dependencies)`);
      for (const name of AGGREGATOR_ONLY) {
        const where = [...packages].filter(([, id]) => id.startsWith(`${name}@`)).map(([w]) => `/${w}`);
        t.same(where, [], `no ${name} package anywhere in the image`);
      }
      // A bundle inlines what it imports: no file the agent runs may even name those packages.
      const named = filesUnder(path.join(root, 'app')).filter((f) => AGGREGATOR_NAMES.test(readFileSync(f, 'latin1'))).map((f) => `/${path.relative(root, f)}`);
      t.same(named.slice(0, 10), [], 'no file under /app names fastify, zod, prom-client or @fastify/swagger');
    } finally {
      await scratch.podman(['image', 'unmount', agent.id]);
    }
    // What the agent's own code could load: nothing of the aggregator's resolves from /app.
    const script = `for (const m of ${JSON.stringify(AGGREGATOR_ONLY)}) { try { require.resolve(m, { paths: ['/app', '/app/dist'] }); console.log(m + ' resolves'); } catch { console.log(m + ' missing'); } }`;
    const resolve = await scratch.podman(['run', '--rm', '--name', scratch.containerName(), '--network', 'none', ...READ_ONLY, '--entrypoint', 'node', agent.id, '-e', script]);
    t.same(resolve.stdout.trim().split('\n').sort(), AGGREGATOR_ONLY.map((m) => `${m} missing`).sort(), 'none of them resolves from /app', { stderr: resolve.stderr });
  });

  t.comment(`uncompressed: nodeprep-agent ${mb(agent.size)}, nodeprep-aggregator ${mb(aggregator.size)} (FROM ${built.base})`);
}

// Cold (tools, base image, both images): about 4 minutes on 2 cores; warm: seconds.
t.setTimeout(20 * 60_000);
let built: Built | { cannot: string } | undefined;
try {
  built = buildImages();
} catch (err) {
  t.fail((err as Error).message);
}
if (built && 'cannot' in built) {
  if (process.env.CI === 'true') throw new Error(`CI=true and the image tests cannot run: ${built.cannot}`);
  t.plan(0, `image tests skipped: ${built.cannot}`);
} else if (built) {
  await run(built);
}
