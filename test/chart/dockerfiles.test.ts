// Dockerfile.agent and Dockerfile.aggregator, checked without a Docker engine: every path they
// copy exists (after `npm run build`), the entry points exist and are the commands the chart
// runs, the agent image has iptables and nftables and only the agent's bundle, the aggregator
// image runs as non-root, and the code an image carries needs nothing the image leaves out.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { builtinModules } from 'node:module';
import { join, posix } from 'node:path';
import { only, render, repoRoot } from '../support/helm.js';
import { shebangFlags } from '../../scripts/shebang.js';

interface Instruction {
  cmd: string;
  args: string;
  line: number;
}
interface Stage {
  name: string;
  base: string;
  instructions: Instruction[];
}

/** Stages and instructions; joins continuation lines and drops comments. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let line = lines[i] ?? '';
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) {
      line = line.slice(0, -1) + ' ' + (lines[++i] ?? '').replace(/^\s*#.*$/, '');
    }
    const m = /^\s*(\w+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`line ${start}: cannot parse ${JSON.stringify(line)}`);
    const cmd = (m[1] as string).toUpperCase();
    const rest = (m[2] as string).trim();
    if (cmd === 'FROM') {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!f) throw new Error(`line ${start}: bad FROM`);
      const base = (f[1] as string).replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => args[a ?? b] ?? '');
      stages.push({ name: f[2] ?? String(stages.length), base, instructions: [] });
    } else if (stages.length === 0) {
      if (cmd !== 'ARG') throw new Error(`line ${start}: ${cmd} before FROM`);
      const a = /^(\w+)(?:=(.*))?$/.exec(rest);
      if (a) args[a[1] as string] = a[2] ?? '';
    } else {
      (stages[stages.length - 1] as Stage).instructions.push({ cmd, args: rest, line: start });
    }
  }
  return { args, stages };
}

/** COPY [--from=x] src... dest, shell form only (what these Dockerfiles use). */
function parseCopy(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  let from: string | undefined;
  while (words[0]?.startsWith('--')) {
    const flag = words.shift() as string;
    const m = /^--from=(.+)$/.exec(flag);
    if (m) from = m[1];
  }
  const dest = words.pop();
  if (!dest || words.length === 0) throw new Error(`COPY ${args}: no source or destination`);
  return { ...(from ? { from } : {}), sources: words, dest };
}

function workdirAt(stage: Stage, index: number): string {
  let wd = '/';
  for (const ins of stage.instructions.slice(0, index)) if (ins.cmd === 'WORKDIR') wd = posix.resolve(wd, ins.args);
  return wd;
}

/**
 * .dockerignore as a predicate over context-relative paths: top-level names and globs, and "!"
 * exceptions; as in Docker, the last pattern that matches decides.
 */
function dockerignore(): (path: string) => boolean {
  const text = readFileSync(join(repoRoot, '.dockerignore'), 'utf8');
  const patterns = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const p = l.replace(/^!/, '');
      return { except: l.startsWith('!'), re: new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`) };
    });
  return (path) => {
    let out = false;
    for (const { except, re } of patterns) if (re.test(path)) out = !except;
    return out;
  };
}

const isIgnored = dockerignore();

interface ImageFile {
  /** Where the file lives in the repository (the context, or dist/ after `npm run build`). */
  repoPath?: string;
  /** Made by a RUN step (npm ci) instead of copied. */
  madeBy?: string;
}

/**
 * Follows a path in a stage back to where it comes from: a context file, or a path in an
 * earlier stage (recursively), or the output of a RUN in the stage itself.
 */
function origin(stages: Stage[], stageName: string, path: string): ImageFile | undefined {
  const stage = stages.find((s) => s.name === stageName);
  if (!stage) throw new Error(`no stage ${stageName}`);
  const copies = stage.instructions.map((ins, i) => ({ ins, i })).filter(({ ins }) => ins.cmd === 'COPY');
  for (const { ins, i } of copies.reverse()) {
    const copy = parseCopy(ins.args);
    const wd = workdirAt(stage, i);
    const dest = posix.resolve(wd, copy.dest);
    for (const src of copy.sources) {
      const target = copy.dest.endsWith('/') || copy.sources.length > 1 ? posix.join(dest, posix.basename(src)) : dest;
      if (path !== target && !path.startsWith(`${target}/`)) continue;
      const rest = path.slice(target.length);
      if (copy.from) return origin(stages, copy.from, posix.normalize(src + rest));
      return { repoPath: posix.normalize(posix.join(src, rest)).replace(/^\.\//, '') };
    }
  }
  const wd = workdirAt(stage, stage.instructions.length);
  const rel = posix.relative(wd, path);
  const runs = stage.instructions.filter((ins) => ins.cmd === 'RUN').map((ins) => ins.args);
  if (rel.split('/')[0] === 'node_modules') {
    const npmCi = runs.find((r) => /\bnpm ci\b/.test(r));
    return npmCi ? { madeBy: npmCi } : undefined;
  }
  if (rel.split('/')[0] === 'dist' && runs.some((r) => /\bnpm run build\b/.test(r))) return { repoPath: rel };
  return undefined;
}

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
  type: string;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
};

function jsonArray(args: string): string[] {
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error(`not an exec-form array: ${args}`);
  return parsed as string[];
}


function lastOf(stage: Stage, cmd: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.cmd === cmd).pop();
}

const images = [
  { file: 'Dockerfile.agent', component: 'agent', kind: 'DaemonSet', bin: 'nodeprep-agent' },
  { file: 'Dockerfile.aggregator', component: 'aggregator', kind: 'Deployment', bin: 'nodeprep-aggregator' },
] as const;

t.test('.dockerignore keeps a local node_modules and dist out of the context', async (t) => {
  for (const p of ['node_modules', 'node_modules/x/index.js', 'dist/agent/main.js', 'dist/nodeprep-agent.mjs', '.git', 'scripts/local.ts']) {
    t.ok(isIgnored(p), `${p} is ignored`);
  }
  // The one script the build stage runs (npm run build bundles both programs with it).
  t.notOk(isIgnored('scripts/bundle.mjs'), 'scripts/bundle.mjs is in the context');
});

const pinnedNodeMajor = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies.node?.split('.')[0];

for (const image of images) {
  t.test(image.file, async (t) => {
    const { stages } = parseDockerfile(readFileSync(join(repoRoot, image.file), 'utf8'));
    const final = stages[stages.length - 1] as Stage;
    t.ok(stages.length >= 2, 'multi-stage');
    // The images run the Node.js major the tests run on (package.json pins it as a devDependency).
    const major = process.versions.node.split('.')[0];
    t.equal(pinnedNodeMajor, major, `the tests run on the pinned Node.js ${pinnedNodeMajor}`);
    for (const s of stages) t.equal(s.base, `node:${major}-bookworm-slim`, `stage ${s.name} is node:${major}-bookworm-slim`);

    const build = stages.find((s) => s.instructions.some((i) => i.cmd === 'RUN' && /\bnpm run build\b/.test(i.args)));
    t.ok(build, 'a stage runs npm run build');
    t.ok(build?.instructions.some((i) => i.cmd === 'RUN' && /\bnpm ci\b/.test(i.args) && !/--omit=dev/.test(i.args)), 'it installs dev dependencies (tsc) with npm ci');
    t.notOk(final.instructions.some((i) => i.cmd === 'RUN' && /\bnpm\b/.test(i.args)), 'the final stage does not run npm');

    // Every COPY: context sources exist and are not ignored; --from sources trace back to
    // something that exists after npm run build, or to npm ci.
    for (const stage of stages) {
      stage.instructions.forEach((ins) => {
        if (ins.cmd !== 'COPY') return;
        const copy = parseCopy(ins.args);
        for (const src of copy.sources) {
          const where = `line ${ins.line}: COPY ${copy.from ? `--from=${copy.from} ` : ''}${src}`;
          if (!copy.from) {
            t.ok(existsSync(join(repoRoot, src)), `${where} exists in the repository`);
            t.notOk(isIgnored(posix.normalize(src)), `${where} is not excluded by .dockerignore`);
            continue;
          }
          // COPY --from sources are relative to the root of that stage, not to its WORKDIR.
          const from = origin(stages, copy.from, posix.resolve('/', src));
          t.ok(from, `${where} is made in stage ${copy.from}`);
          if (from?.repoPath !== undefined) {
            t.ok(existsSync(join(repoRoot, from.repoPath)), `${where} exists (${from.repoPath} after npm run build)`);
          }
        }
      });
    }

    // Entry point: exec form, node + a file that the image carries and package.json's bin names.
    const entrypoint = jsonArray(lastOf(final, 'ENTRYPOINT')?.args ?? '[]');
    t.equal(entrypoint[0], 'node', 'ENTRYPOINT runs node');
    // node's own flags (the agent's memory flags) come before the script.
    const main = entrypoint.slice(1).find((a) => !String(a).startsWith('--')) as string;
    const mainFrom = origin(stages, final.name, main);
    t.equal(mainFrom?.repoPath, pkg.bin[image.bin], `${main} is the build of package.json bin ${image.bin}`);
    t.ok(existsSync(join(repoRoot, pkg.bin[image.bin] as string)), `${pkg.bin[image.bin]} exists after npm run build`);
    // The program's #! line says which node flags to run it with (its memory); so does the image.
    const flags = shebangFlags(join(repoRoot, pkg.bin[image.bin] as string));
    t.ok(flags.length > 0, `${pkg.bin[image.bin]} names its node flags on its #! line`);
    t.same(entrypoint.slice(1, entrypoint.indexOf(main)), flags, 'the ENTRYPOINT passes the flags of the #! line');
    t.match(main, /\.mjs$/, `the ${image.component} is one .mjs file, an ES module without a package.json`);

    // The chart runs exactly the image's entry point.
    const workload = only(render(), image.kind);
    const container = workload.spec.template.spec.containers[0];
    t.same(container.command, entrypoint, `the chart's ${image.kind} command is the ENTRYPOINT`);
    const cmd = lastOf(final, 'CMD');
    if (container.args) t.same(container.args, jsonArray(cmd?.args ?? '[]'), 'the chart\'s args are the CMD');
    else t.notOk(cmd, 'no CMD that the chart would silently drop');
  });
}

t.test('the agent image has iptables and nftables, and runs as root', async (t) => {
  const { stages } = parseDockerfile(readFileSync(join(repoRoot, 'Dockerfile.agent'), 'utf8'));
  const final = stages[stages.length - 1] as Stage;
  const install = final.instructions.find((i) => i.cmd === 'RUN' && /apt-get install/.test(i.args));
  t.ok(install, 'the final stage installs Debian packages');
  const packages = (install?.args ?? '').split(/&&/).find((c) => /apt-get install/.test(c))?.split(/\s+/).filter((w) => w && !w.startsWith('-')) ?? [];
  t.ok(packages.includes('iptables'), 'iptables (iptables-{nft,legacy}-save)');
  t.ok(packages.includes('nftables'), 'nftables (nft)');
  t.match(install?.args ?? '', /rm -rf \/var\/lib\/apt\/lists/, 'no apt lists left in the image');
  t.equal(lastOf(final, 'USER')?.args, '0', 'uid 0, as iptables-save needs with CAP_NET_ADMIN');
  const ds = only(render(), 'DaemonSet');
  t.equal(ds.spec.template.spec.containers[0].securityContext.runAsUser, 0, 'and the chart agrees');
});

t.test('the aggregator image runs as a non-root user, by number', async (t) => {
  const { stages } = parseDockerfile(readFileSync(join(repoRoot, 'Dockerfile.aggregator'), 'utf8'));
  const final = stages[stages.length - 1] as Stage;
  const user = lastOf(final, 'USER')?.args ?? '';
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  t.ok(m, `USER ${user} is numeric, so the kubelet can check runAsNonRoot`);
  t.not(Number(m?.[1]), 0, 'not uid 0');
  const pod = only(render(), 'Deployment').spec.template.spec;
  t.equal(pod.securityContext.runAsUser, Number(m?.[1]), 'the chart runs the same uid');
  t.notOk(final.instructions.some((i) => i.cmd === 'RUN' && /apt-get/.test(i.args)), 'no extra packages');
});

/** Where each file a final stage copies comes from, as repository paths under dist/. */
function copiedFromDist(stages: Stage[]): string[] {
  const final = stages[stages.length - 1] as Stage;
  return final.instructions
    .filter((i) => i.cmd === 'COPY')
    .flatMap((i) => {
      const c = parseCopy(i.args);
      return c.sources.map((s) => (c.from ? origin(stages, c.from, posix.resolve('/', s)) : { repoPath: s }));
    })
    .map((o) => o?.repoPath)
    .filter((p): p is string => !!p && p.startsWith('dist/'));
}

// Each image holds one file: its program's bundle. Nothing else of the build (no node_modules, no
// package.json, no tsc output), so nothing of the aggregator's can be in the agent's image; and
// what a bundle imports at run time is Node.js itself (esbuild's metafile lists every import it
// left out), or one of the optional helpers ws tries in a try block (OPTIONAL).
const OPTIONAL: Record<string, string[]> = { agent: [], aggregator: ['bufferutil', 'utf-8-validate'] };
for (const image of images) {
  t.test(`${image.file}: the bundle and nothing else, needing only Node.js`, async (t) => {
    const { stages } = parseDockerfile(readFileSync(join(repoRoot, image.file), 'utf8'));
    const final = stages[stages.length - 1] as Stage;
    const copies = final.instructions.filter((i) => i.cmd === 'COPY').map((i) => parseCopy(i.args));
    const bundle = pkg.bin[image.bin] as string;
    t.same(copies.flatMap((c) => c.sources.map((s) => (c.from ? origin(stages, c.from, posix.resolve('/', s))?.repoPath : s))), [bundle], 'the final stage copies the bundle only');
    t.notOk(final.instructions.some((i) => i.cmd === 'RUN' && /\bnpm\b/.test(i.args)), 'and installs no package');
    t.same(copiedFromDist(stages), [bundle]);
    const meta = JSON.parse(readFileSync(join(repoRoot, bundle.replace(/\.mjs$/, '.meta.json')), 'utf8')) as { outputs: Record<string, { imports: { path: string; kind?: string; external?: boolean }[] }> };
    const imports = Object.values(meta.outputs).flatMap((o) => o.imports);
    t.ok(imports.length > 0, `${imports.length} imports left for run time`);
    const notBuiltin = imports.filter((i) => !i.external || !(i.path.startsWith('node:') || builtinModules.includes(i.path)));
    t.same([...new Set(notBuiltin.map((i) => `${i.path} (${i.kind ?? ''})`))].sort(), OPTIONAL[image.component]!.map((p) => `${p} (require-call)`), 'every other one is a Node.js built-in module');
  });
}

// The build stage, replayed outside Docker: only what it copies from the context, then what
// `npm run build` runs, the compiler and the agent's bundler. Catches a source folder the
// Dockerfiles forget to copy.
t.test('the build stage compiles from exactly what it copies', async (t) => {
  const builds = images.map((image) => {
    const { stages } = parseDockerfile(readFileSync(join(repoRoot, image.file), 'utf8'));
    return stages.find((s) => s.instructions.some((i) => i.cmd === 'RUN' && /\bnpm run build\b/.test(i.args))) as Stage;
  });
  t.same(
    builds[0]?.instructions.map((i) => `${i.cmd} ${i.args}`),
    builds[1]?.instructions.map((i) => `${i.cmd} ${i.args}`),
    'both images share one build stage (one cache, one build)',
  );
  const build = builds[0] as Stage;
  const ctx = mkdtempSync(join(tmpdir(), 'nodeprep-build-'));
  t.teardown(() => rmSync(ctx, { recursive: true, force: true }));
  for (const ins of build.instructions) {
    if (ins.cmd !== 'COPY') continue;
    const copy = parseCopy(ins.args);
    if (copy.from) continue;
    for (const src of copy.sources) cpSync(join(repoRoot, src), join(ctx, src), { recursive: true });
  }
  // Stands in for `RUN npm ci`: the same lock file, already installed here.
  symlinkSync(join(repoRoot, 'node_modules'), join(ctx, 'node_modules'), 'dir');
  // `npm run build` as the image runs it, with the tools of node_modules/.bin (tsc, node 24).
  const script = (JSON.parse(readFileSync(join(ctx, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.build!;
  const res = spawnSync('sh', ['-c', script], { cwd: ctx, encoding: 'utf8', env: { ...process.env, PATH: `${join(repoRoot, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` } });
  t.equal(res.status, 0, `npm run build (${script}) succeeds with only the copied sources`, { stdout: res.stdout, stderr: res.stderr });
  t.ok(existsSync(join(ctx, pkg.bin['nodeprep-agent'] as string)), `${pkg.bin['nodeprep-agent']} is built`);
  t.ok(existsSync(join(ctx, pkg.bin['nodeprep-aggregator'] as string)), `${pkg.bin['nodeprep-aggregator']} is built`);
});
