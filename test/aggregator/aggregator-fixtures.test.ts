// Detection on the foundation's fixtures: real iptables-save dumps and host-root trees, turned
// into reports by the agent's own collection, with the findings each case should raise. Then the
// same through the built aggregator as a process: reports made by `nodeprep-agent collect
// --from-dump`, posted over HTTP, findings read back, alert lines read from its stdout.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { collectReport, type DumpSource } from '../../agent/collect.js';
import { compileChainPatterns } from '../../aggregator/detect/illumio.js';
import { analyzeNode } from '../../aggregator/detect/node.js';
import type { Finding } from '../../protocol/findings.js';
import { AGENT_BIN, AGGREGATOR_BIN, HOST_FIXTURES, IPTABLES_FIXTURES, aggregatorNodeFlags } from '../support/fixtures.js';
import { logCaughtUp } from '../support/log-caught-up.js';

interface Case {
  node: string;
  host: string;
  dumps: string[]; // [family/backend=]file under test/fixtures/iptables
  codes: string[]; // what analyzeNode says about this node alone
  mode?: 'insert' | 'append'; // the node's Calico mode, where the case is about it
}

// Written by hand from design.md sections 5 and 6.
const CASES: Case[] = [
  { node: 'insert', host: 'duplicate-a', dumps: ['ipv4/nft=calico-insert.v4.nft.txt'], codes: ['CALICO_INSERT_MODE'] },
  { node: 'append', host: 'duplicate-b', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: [] },
  { node: 'append-tail', host: 'unique', dumps: ['ipv4/nft=calico-append-tail.v4.nft.txt'], codes: [] },
  { node: 'illumio-first', host: 'illumio', dumps: ['ipv4/nft=foreign-first-append.v4.nft.txt'], codes: [] },
  { node: 'insert-with-illumio', host: 'illumio', dumps: ['ipv4/nft=calico-insert.v4.nft.txt'], codes: ['CALICO_ILLUMIO_CONFLICT'] }, // escalated, not both
  // Felix 3.28.2+ in Insert mode: the always-appended FORWARD rules and nat POSTROUTING jump are
  // no evidence of Append mode, and do not make the chains look out of sync.
  { node: 'insert-tail', host: 'unique', dumps: ['ipv4/nft=calico-insert-tail.v4.nft.txt'], codes: ['CALICO_INSERT_MODE'], mode: 'insert' },
  { node: 'insert-tail-illumio', host: 'illumio', dumps: ['ipv4/nft=calico-insert-tail.v4.nft.txt'], codes: ['CALICO_ILLUMIO_CONFLICT'], mode: 'insert' },
  // Another product first, Calico appended, the chain named by no pattern: the guide's layout
  // where Illumio runs (host marker), another product's jump where it does not.
  { node: 'unnamed-first-illumio', host: 'illumio', dumps: ['ipv4/nft=acme-first-append.v4.nft.txt'], codes: [], mode: 'append' },
  { node: 'unnamed-first', host: 'unique', dumps: ['ipv4/nft=acme-first-append.v4.nft.txt'], codes: ['FOREIGN_HEAD_RULE'], mode: 'append' },
  // ... and first above a Calico in Insert mode, which it pushed down.
  { node: 'pushed-down', host: 'illumio', dumps: ['ipv4/nft=foreign-first-insert.v4.nft.txt'], codes: ['CALICO_ILLUMIO_CONFLICT'] },
  // iptables-nft-save could not read the filter table: its mode is undetermined, the rest decides.
  { node: 'nft-incompatible', host: 'unique', dumps: ['ipv4/nft=bad/nft-incompatible-filter.txt'], codes: ['CALICO_INSERT_MODE', 'IPTABLES_INCOMPLETE'], mode: 'insert' },
  // A base chain of another program's in iptables' filter table: filter is not whole, nat is.
  { node: 'nft-base-chain', host: 'unique', dumps: ['ipv4/nft=bad/nft-base-chain-filter.txt'], codes: ['IPTABLES_INCOMPLETE'] },
  { node: 'leftover', host: 'unique', dumps: ['ipv4/nft=leftover-cali.v4.nft.txt'], codes: ['CALICO_STALE_CHAINS'] },
  { node: 'mixed-backends', host: 'unique', dumps: ['ipv4/nft=calico-append.v4.nft.txt', 'ipv4/legacy=docker.v4.legacy.txt'], codes: ['IPTABLES_MIXED_BACKENDS'] },
  { node: 'v6-insert', host: 'unique', dumps: ['ipv6/nft=calico-insert.v6.nft.txt'], codes: ['CALICO_INSERT_MODE'] },
  { node: 'truncated', host: 'unique', dumps: ['ipv4/nft=bad/truncated-half.txt'], codes: ['CALICO_INSERT_MODE', 'IPTABLES_INCOMPLETE'] },
  { node: 'iptables-s', host: 'unique', dumps: ['ipv4/nft=bad/iptables-S.txt'], codes: ['IPTABLES_INCOMPLETE'] },
  { node: 'empty-id', host: 'empty', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: ['MACHINE_ID_INVALID'] },
  { node: 'uninitialized-id', host: 'uninitialized', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: ['MACHINE_ID_INVALID'] },
  { node: 'zero-id', host: 'all-zeros', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: ['MACHINE_ID_INVALID'] },
  { node: 'uppercase-id', host: 'uppercase', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: ['MACHINE_ID_INVALID'] },
  { node: 'missing-id', host: 'missing', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: ['MACHINE_ID_INVALID'] },
  { node: 'dbus-copy', host: 'dbus-copy', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: [] },
  { node: 'dbus-mismatch', host: 'dbus-mismatch', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: ['MACHINE_ID_DBUS_MISMATCH'] },
  { node: 'server-ven', host: 'server-ven', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: ['ILLUMIO_SERVER_VEN'] },
];

const dumpSource = (spec: string): DumpSource => {
  const [prefix, file] = spec.split('=') as [string, string];
  const [family, backend] = prefix.split('/') as [DumpSource['family'], DumpSource['backend']];
  return { family, backend, file: path.join(IPTABLES_FIXTURES, file) };
};

t.test('each fixture case raises what it should, and only that', async (t) => {
  const options = { isIllumioChain: compileChainPatterns('illumio*') };
  for (const c of CASES) {
    const { report } = await collectReport({ hostRoot: path.join(HOST_FIXTURES, c.host), nodeName: c.node, dumps: c.dumps.map(dumpSource) });
    const analysis = analyzeNode(report, options);
    const codes = [...new Set(analysis.findings.map((f) => f.code))].sort();
    t.same(codes, c.codes, `${c.node}: ${c.codes.join(', ') || 'no finding'}`);
    if (c.mode) t.equal(analysis.calicoMode, c.mode, `${c.node}: Calico mode`);
  }
});

t.test('the built aggregator, fed by the built agent', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-agg-proc-'));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'fixture-token\n');
  const child = spawn(process.execPath, [...aggregatorNodeFlags(), AGGREGATOR_BIN], {
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', AUTH_TOKEN_FILE: tokenFile, ILLUMIO_CHAIN_PATTERNS: 'illumio*' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const lines: string[] = [];
  child.stdout.setEncoding('utf8');
  let carry = '';
  child.stdout.on('data', (d: string) => {
    const parts = (carry + d).split('\n');
    carry = parts.pop() ?? '';
    lines.push(...parts);
  });
  const logged = () => lines.flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; } });
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the aggregator did not start within 10 s')), 10_000);
    const poll = setInterval(() => {
      const listening = logged().find((e) => typeof e.msg === 'string' && /^Server listening at http:\/\/127\.0\.0\.1:\d+$/.test(e.msg));
      if (listening) {
        clearInterval(poll);
        clearTimeout(timer);
        resolve((listening.msg as string).slice('Server listening at '.length));
      }
    }, 50);
  });

  const post = async (c: Case) => {
    const made = spawnSync(process.execPath, [AGENT_BIN, 'collect', '--node-name', c.node, '--host-root', path.join(HOST_FIXTURES, c.host), ...c.dumps.flatMap((d) => ['--from-dump', `${d.split('=')[0]}=${dumpSource(d).file}`])], { encoding: 'utf8' });
    const res = await fetch(`${base}/v1/reports`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer fixture-token' }, body: made.stdout });
    return res.status;
  };
  for (const c of CASES) t.equal(await post(c), 202, `${c.node}: accepted`);
  const findings = ((await (await fetch(`${base}/v1/findings`)).json()) as { findings: Finding[] }).findings;

  // Per node, what the table says; across nodes: the duplicate pair, the illumio pair, the mixed mode.
  for (const c of CASES) {
    const own = [...new Set(findings.filter((f) => f.nodes.length === 1 && f.nodes[0] === c.node && f.code !== 'CALICO_MODE_MIXED').map((f) => f.code))].sort();
    t.same(own, c.codes, `${c.node} over HTTP`);
  }
  const duplicates = findings.filter((f) => f.code === 'MACHINE_ID_DUPLICATE').map((f) => [...f.nodes].sort().join(',')).sort();
  // Host trees that share an ID: duplicate-a/b; and unique, dbus-copy, dbus-mismatch, illumio,
  // server-ven all carry the same ID (make-fixtures.sh).
  t.ok(duplicates.includes('append,insert'), 'the cloned pair is found');
  t.ok(findings.some((f) => f.code === 'CALICO_MODE_MIXED'), 'Insert and Append nodes in one cluster');

  // Every active finding was logged once as raised, with its id.
  const raisedLines = () => logged().filter((e) => e.msg === 'finding raised');
  await logCaughtUp(() => findings.every((f) => raisedLines().some((e) => e.id === f.id)));
  const raised = raisedLines();
  for (const f of findings) t.equal(raised.filter((e) => e.id === f.id).length, 1, `raised once: ${f.code} ${f.nodes.join(',')}`);

  // Fix the cloned node: its report now carries another ID; the duplicate is resolved, once.
  const pair = findings.find((f) => f.code === 'MACHINE_ID_DUPLICATE' && f.nodes.includes('insert'))!;
  t.equal(await post({ node: 'append', host: 'uninitialized', dumps: ['ipv4/nft=calico-append.v4.nft.txt'], codes: [] }), 202);
  const after = ((await (await fetch(`${base}/v1/findings?code=MACHINE_ID_DUPLICATE`)).json()) as { findings: Finding[] }).findings;
  t.notOk(after.some((f) => f.id === pair.id), 'the pair is gone');
  await logCaughtUp(() => logged().some((e) => e.msg === 'finding resolved' && e.id === pair.id));
  t.equal(logged().filter((e) => e.msg === 'finding resolved' && e.id === pair.id).length, 1, 'resolved once');

  // Without the token: 401, and nothing changes.
  const before = JSON.stringify(((await (await fetch(`${base}/v1/nodes`)).json()) as { nodes: unknown[] }).nodes.length);
  const unauthorized = await fetch(`${base}/v1/reports`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.equal(unauthorized.status, 401);
  t.equal(JSON.stringify(((await (await fetch(`${base}/v1/nodes`)).json()) as { nodes: unknown[] }).nodes.length), before);
  t.notOk(lines.some((l) => l.includes('fixture-token')), 'the token is in no log line');
  t.notOk(lines.some((l) => l.includes('"iptables"') || l.includes('-A INPUT')), 'no report or ruleset in any log line');
});
