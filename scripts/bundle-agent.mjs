// npm run build, second step: the agent as one file, dist/nodeprep-agent.mjs, which is all that
// Dockerfile.agent puts on the node (issue 13, item 2). esbuild follows the imports of
// agent/main.ts, so the bundle holds agent/, the parts of protocol/ the agent imports (type-only
// imports, and with them zod, are erased) and pino and undici with their own dependencies;
// nothing of the aggregator can reach it unless the agent imports it, and
// test/agent/bundle.test.ts reads the metafile written next to the bundle to prove it does not.
//
// Plain JavaScript, not TypeScript: it runs with nothing built, in the image's build stage too
// (.dockerignore lets this one file of scripts/ into the context).
import { build } from 'esbuild';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outfile = path.join(root, 'dist/nodeprep-agent.mjs');
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

const result = await build({
  absWorkingDir: root,
  entryPoints: ['agent/main.ts'],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  // pino and undici are CommonJS and require() Node's built-ins; inside an ES module there is no
  // `require`, so give the bundle one (esbuild's documented way for ESM output on Node).
  banner: { js: "import { createRequire as __nodeprepCreateRequire } from 'node:module';\nconst require = __nodeprepCreateRequire(import.meta.url);" },
  // The image carries no package.json for agent/version.ts to read: the version is built in.
  define: { NODEPREP_AGENT_VERSION: JSON.stringify(version) },
  // Whitespace and syntax only: names stay, so stack traces in the agent's logs stay readable.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
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
writeFileSync(path.join(root, 'dist/nodeprep-agent.meta.json'), JSON.stringify(result.metafile, null, 1));

// The packages' licences (MIT and ISC ask for their notice in every copy) travel inside the one
// file the image carries, as a closing comment.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
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
