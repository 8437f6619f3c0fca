// npm run build, second step: each program as one file, which is all its image carries (issue 13,
// item 2; issue 15). esbuild follows the imports of the program's main.ts and keeps only what is
// reached: type-only imports (and with them zod in the agent) are erased.
//
// - dist/nodeprep-agent.mjs: agent/, the parts of protocol/ it imports, pino and undici; nothing
//   of the aggregator can reach it unless the agent imports it, and test/agent/bundle.test.ts
//   reads the metafile written next to the bundle to prove it does not.
// - dist/nodeprep-aggregator.mjs: the aggregator with fastify, pino, prom-client and
//   @kubernetes/client-node. Bundled for memory: client-node's index loads every generated API
//   and model (about 80 MiB of the process, most of it module source kept as strings); the bundle
//   keeps the parts used. Measured with 5,000 nodes heartbeating: 151 MiB resident instead of
//   183, heap 46 MiB instead of 70.
//
// Plain JavaScript, not TypeScript: it runs with nothing built, in the images' build stage too
// (.dockerignore lets this one file of scripts/ into the context).
import { build } from 'esbuild';
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));

// undici's index loads all of undici: fetch, WebSocket, EventSource, caches (node:sqlite), mocks.
// agent/sender.ts uses two things, Agent and request(); this module gives it those two from
// undici's own files and nothing else, which keeps about 5 MiB off the agent's resident memory
// (npm run bench, issue 13 item 3). request() is undici's, called as undici's index calls it:
// on the dispatcher, with the URL split into origin and path. A file moved in a new undici fails
// this build ("Could not resolve"), and the tests that run the bundle send real reports with it.
//
// The agent speaks HTTP/1.1 only (allowH2: false): one small POST every sample gains nothing
// from HTTP/2, and undici's HTTP/2 client loads node:http2 as soon as it is loaded itself, which
// costs 3 MiB over http:// (under 1 MiB over https://, which loads node:tls anyway). So undici
// gets, for node:http2, what it falls back to where Node.js has no HTTP/2 ({ constants: {} },
// lib/dispatcher/client-h2.js), and never offers h2 to the aggregator; bundle.test.ts checks
// both against a server that offers h2.
const UNDICI_FOR_THE_AGENT = `
const UndiciAgent = require('undici/lib/dispatcher/agent.js');
const apiRequest = require('undici/lib/api/api-request.js');
const { parseURL } = require('undici/lib/core/util.js');
class Agent extends UndiciAgent {
  constructor(opts) {
    super({ ...opts, allowH2: false });
  }
}
function request(url, opts) {
  const { dispatcher, ...rest } = opts;
  if (!dispatcher) throw new TypeError('the agent passes its own dispatcher to request()');
  const u = parseURL(url);
  return apiRequest.call(dispatcher, { ...rest, origin: u.origin, path: u.search ? u.pathname + u.search : u.pathname, method: opts.method || 'GET' });
}
module.exports = { Agent, request };
`;
const NO_HTTP2 = 'module.exports = { constants: {} };';

await bundle('agent', {
  // The image carries no package.json for agent/version.ts to read: the version is built in.
  define: { NODEPREP_AGENT_VERSION: JSON.stringify(version) },
  plugins: [
    {
      name: 'undici-for-the-agent',
      setup(b) {
        b.onResolve({ filter: /^undici$/ }, (args) =>
          args.importer.endsWith(path.join('agent', 'sender.ts')) ? { path: 'undici', namespace: 'undici-for-the-agent' } : undefined,
        );
        b.onResolve({ filter: /^node:http2$/ }, (args) =>
          /node_modules\/undici\/lib\/dispatcher\/client-h2\.js$/.test(args.importer) ? { path: 'node:http2', namespace: 'undici-for-the-agent' } : undefined,
        );
        b.onLoad({ filter: /^undici$/, namespace: 'undici-for-the-agent' }, () => ({ contents: UNDICI_FOR_THE_AGENT, loader: 'js', resolveDir: root }));
        b.onLoad({ filter: /^node:http2$/, namespace: 'undici-for-the-agent' }, () => ({ contents: NO_HTTP2, loader: 'js' }));
      },
    },
  ],
});

await bundle('aggregator', {
  // ws (under client-node) tries these optional native helpers in a try block and does without:
  // the image has neither.
  external: ['bufferutil', 'utf-8-validate'],
});

/** Builds dist/nodeprep-<program>.mjs from <program>/main.ts, with its metafile and licences. */
async function bundle(program, options) {
  const outfile = path.join(root, `dist/nodeprep-${program}.mjs`);
  const result = await build({
    absWorkingDir: root,
    entryPoints: [`${program}/main.ts`],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    // The packages are CommonJS and require() Node's built-ins; inside an ES module there is no
    // `require`, so give the bundle one (esbuild's documented way for ESM output on Node).
    banner: { js: "import { createRequire as __nodeprepCreateRequire } from 'node:module';\nconst require = __nodeprepCreateRequire(import.meta.url);" },
    // Whitespace and syntax only: names stay, so stack traces in the logs stay readable.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'eof',
    metafile: true,
    logLevel: 'warning',
    ...options,
  });
  writeFileSync(path.join(root, `dist/nodeprep-${program}.meta.json`), JSON.stringify(result.metafile, null, 1));
  appendNotices(outfile, result.metafile);
  // Run by its #! line (npm run start:<program>, the package's bin).
  chmodSync(outfile, 0o755);
}

/**
 * The packages' licences (MIT and ISC ask for their notice in every copy) travel inside the one
 * file the image carries, as a closing comment.
 */
function appendNotices(outfile, metafile) {
  const packages = new Map();
  for (const input of Object.keys(metafile.inputs)) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) packages.set(m[1], path.join(root, m[1]));
  }
  const notices = [...packages.entries()].sort().map(([where, dir]) => {
    const { name, version: v, license } = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
    const text = file ? readFileSync(path.join(dir, file), 'utf8').trim() : `${license} (no licence file in ${where})`;
    return `${name}@${v} (${license}):\n\n${text}`;
  });
  writeFileSync(outfile, `${readFileSync(outfile, 'utf8')}/*! Third-party software in this file:\n\n${notices.join('\n\n---\n\n').replaceAll('*/', '* /')}\n*/\n`);
}
