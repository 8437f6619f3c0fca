// The agent on a host whose kernel has no nf_tables (agent/nf-tables.ts): every nft-backed
// command and the monitor are stubs first on PATH that record being run, so that the test sees
// what the agent would have run on the host. While the /proc/modules fixture lacks nf_tables,
// nothing nft-backed runs and the reports carry no nft ruleset and no error; once it lists
// nf_tables, the monitor starts and the nft save runs.
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import t from 'tap';
import { parseAgentArgs } from '../../agent/cli.js';
import { runAgent } from '../../agent/run.js';
import type { NodeReport } from '../../protocol/report.js';
import { FIXTURES, IPTABLES_FIXTURES } from '../support/fixtures.js';
import { until } from '../support/waiting.js';

const NFT_BACKED = ['iptables-nft-save', 'ip6tables-nft-save', 'nft', 'xtables-monitor', 'iptables-legacy-save', 'ip6tables-legacy-save'];

t.test('no nf_tables in the kernel: no nft command, no monitor; nf_tables loaded later: both', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'nodeprep-nftguard-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'bin');
  const record = path.join(dir, 'ran.log');
  const procNet = path.join(dir, 'proc-net'); // no ip_tables_names: no legacy save either
  const procModules = path.join(dir, 'modules');
  writeFileSync(record, '');
  for (const d of [bin, procNet]) mkdirSync(d);
  const stub = (name: string, then: string) => {
    writeFileSync(path.join(bin, name), `#!/bin/sh\necho "${name} $*" >> '${record}'\n${then}\n`);
    chmodSync(path.join(bin, name), 0o755);
  };
  for (const name of NFT_BACKED) stub(name, name === 'xtables-monitor' ? 'exec sleep 300' : name.includes('nft-save') ? `cat '${path.join(IPTABLES_FIXTURES, 'calico-insert.v4.nft.txt')}'` : 'exit 1');
  stub('stdbuf', 'shift; exec "$@"'); // the monitor runs as stdbuf -oL xtables-monitor -e
  copyFileSync(path.join(FIXTURES, 'kernel-modules/proc-modules-legacy-only.txt'), procModules);
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${savedPath}`;
  t.teardown(() => void (process.env.PATH = savedPath));

  const accepted: NodeReport[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      accepted.push(JSON.parse(body) as NodeReport);
      res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const cmd = parseAgentArgs(['run', '--node-name', 'n1', '--host-root', path.join(dir, 'host'), '--proc-net', procNet, '--aggregator-url', `http://127.0.0.1:${(server.address() as AddressInfo).port}`, '--sample-interval', '0.05', '--heartbeat-interval', '3600'], {});
  cmd.kernelModules = { procModules, modulesBuiltin: path.join(dir, 'none'), sysModule: path.join(dir, 'none'), kallsyms: path.join(dir, 'none') };
  const logs: string[] = [];
  const stop = new AbortController();
  const done = runAgent(cmd, pino({ level: 'info' }, { write: (line: string) => logs.push(line) }), { signal: stop.signal });
  t.teardown(async () => {
    stop.abort();
    await done;
  });
  const ran = () => readFileSync(record, 'utf8');

  await until('the first report', () => accepted.length >= 1);
  await delay(500); // about ten samples at 50 ms: time for any command the agent would run
  t.equal(ran(), '', 'no nft-backed command and no monitor ran');
  t.same(accepted[0]!.iptables, [], 'no ruleset reported');
  t.same(accepted[0]!.errors, [], 'and no error: an absent backend is not a failure');
  t.equal(logs.filter((l) => l.includes('nf_tables not in the kernel')).length, 1, 'said once in the log, not per sample');

  copyFileSync(path.join(FIXTURES, 'kernel-modules/proc-modules-nf-tables.txt'), procModules); // kube-proxy loaded it
  await until('the monitor started', () => ran().includes('xtables-monitor -e'));
  await until('the nft save ran', () => ran().includes('iptables-nft-save'));
  await until('the nft ruleset reported', () => accepted.some((r) => r.iptables.some((x) => x.backend === 'nft')));
  t.ok(logs.some((l) => l.includes('nf_tables in the kernel')), 'the change logged');
  t.notMatch(ran(), /legacy-save/, 'no legacy save: no legacy tables listed');
  stop.abort();
  await done;
});
