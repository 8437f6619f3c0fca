// The run loop with a listener (agent/run.ts), in-process: the listener and the sources are the
// test's stand-ins, so that the test says exactly when a commit is seen and what a read returns.
// The real listener is tested in namespaces (xtables-monitor.test.ts, listen.test.ts).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Ajv } from 'ajv';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { parseAgentArgs } from '../../agent/cli.js';
import type { Sources } from '../../agent/collect.js';
import { parseIptablesSave } from '../../agent/iptables-save.js';
import type { Commit } from '../../agent/monitor-commits.js';
import { runAgent, type Listener } from '../../agent/run.js';
import type { MonitorEvents } from '../../agent/xtables-monitor.js';
import { classifyError } from '../../aggregator/errors.js';
import { compileReportValidator, reportJsonSchema } from '../../aggregator/report-validation.js';
import type { IptablesRuleset, NodeReport } from '../../protocol/report.js';
import { IPTABLES_FIXTURES } from '../support/fixtures.js';
import { until } from '../support/waiting.js';

const ruleset = (file: string): IptablesRuleset => ({ family: 'ipv4', backend: 'nft', source: 'host', ...parseIptablesSave(readFileSync(path.join(IPTABLES_FIXTURES, file), 'utf8')) });
const CALICO_FIRST = ruleset('calico-insert.v4.nft.txt'); // filter INPUT: cali-INPUT first
const ACME_FIRST = ruleset('foreign-first-insert.v4.nft.txt'); // filter INPUT: acme-INPUT first

/** A listener the test drives: it listens from start() on, and tells what the test makes it tell. */
class StandIn implements Listener {
  listening = false;
  events!: MonitorEvents;
  start(): void {
    this.listening = true;
    this.events.listening();
  }
  ensureListening(): Promise<boolean> {
    return Promise.resolve(this.listening);
  }
  stop(): Promise<void> {
    this.listening = false;
    return Promise.resolve();
  }
  kill(): void {}
  fail(message: string): void {
    this.listening = false;
    this.events.failed(message);
  }
  commit(writer: string, target: string): void {
    const commit: Commit = { generation: 1, pid: 1, writer, added: [{ family: 'ipv4', table: 'filter', chain: 'INPUT', target }], watchedTable: false };
    this.events.commit(commit);
  }
}

/** Sources whose iptables-nft-save returns `current()`, counting host samples and nft reads. */
function sources(current: () => IptablesRuleset) {
  const counts = { host: 0, nft: 0, legacy: 0 };
  const s: Sources = {
    machineId: async () => ({ file: { status: 'ok' as const, appId: 'a'.repeat(32) } }),
    illumio: async () => {
      counts.host++; // once a sample
      return { hostDataDir: false, serverVen: false };
    },
    nft: async () => ({ tables: [], errors: [] }),
    iptables: async (_procNet, backends = ['nft', 'legacy']) => {
      if (backends.includes('legacy')) counts.legacy++;
      if (!backends.includes('nft')) return [];
      counts.nft++;
      return [{ source: 'iptables-nft-save', ruleset: current() }];
    },
  };
  return { sources: s, counts };
}

/** An aggregator: answers with `answer(report)`, keeps what it accepted. */
async function aggregator(t: Test, answer: (report: NodeReport) => { status: number; body: object } = () => ({ status: 202, body: {} })) {
  const accepted: NodeReport[] = [];
  const refused: string[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const report = JSON.parse(body) as NodeReport;
      const { status, body: out } = answer(report);
      if (status < 300) accepted.push(report);
      else refused.push((out as { message: string }).message);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(out));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, accepted, refused };
}

function start(t: Test, url: string, src: Sources, listener: StandIn, flags: string[] = []) {
  const stop = new AbortController();
  const cmd = parseAgentArgs(['run', '--node-name', 'n1', '--host-root', '/nonexistent', '--aggregator-url', url, '--sample-interval', '0.05', '--heartbeat-interval', '3600', ...flags], {});
  const logs: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => logs.push(line) });
  const done = runAgent(cmd, log, {
    sources: src,
    signal: stop.signal,
    listener: (events) => {
      listener.events = events;
      return listener;
    },
  });
  t.teardown(async () => {
    stop.abort();
    await done;
  });
  return { stop: async () => (stop.abort(), await done), logs };
}


const headOf = (report: NodeReport | undefined) => report?.iptables[0]?.tables.find((x) => x.name === 'filter')?.builtinChains.find((c) => c.name === 'INPUT')?.rules[0]?.target;

t.test('listening: the nftables rulesets are read when a commit is seen, not every sample', async (t) => {
  let current = CALICO_FIRST;
  const { sources: src, counts } = sources(() => current);
  const { url, accepted } = await aggregator(t);
  const listener = new StandIn();
  const agent = start(t, url, src, listener);
  await until('the first report', () => accepted.length === 1);
  const nftReads = counts.nft;
  await until('twenty samples', () => counts.host >= 20);
  t.equal(counts.nft, nftReads, 'twenty samples, no commit: no nftables read');
  t.ok(counts.legacy >= 20, 'the legacy backend, which tells nobody, every sample');
  current = ACME_FIRST;
  listener.commit('acme-agent', 'acme-INPUT');
  await until('the change reported', () => accepted.length === 2);
  t.equal(counts.nft, nftReads + 1, 'one read for the commit');
  t.equal(headOf(accepted[1]), 'acme-INPUT');
  const input = (r: NodeReport) => r.headChanges?.filter((c) => c.table === 'filter' && c.chain === 'INPUT');
  t.same(input(accepted[1]!), [{ family: 'ipv4', backend: 'nft', table: 'filter', chain: 'INPUT', from: 'cali-INPUT', to: 'acme-INPUT', at: accepted[1]!.headChanges![0]!.at, by: 'acme-agent' }], 'the writer, as the listener saw it');
  t.notOk(accepted[1]!.headChanges!.find((c) => c.chain === 'FORWARD')?.by, 'no writer where no commit was seen');
  await agent.stop();
});

t.test('the listener down: the rulesets are read every sample until it is back; its error reported after two failures in a row', async (t) => {
  const { sources: src, counts } = sources(() => CALICO_FIRST);
  const { url, accepted } = await aggregator(t);
  const listener = new StandIn();
  const agent = start(t, url, src, listener);
  await until('the first report', () => accepted.length === 1);
  const listenerError = (r: NodeReport) => r.errors.find((e) => e.source === 'xtables-monitor');
  await until('listening, and a sample since', () => counts.host >= 3);

  listener.fail('xtables-monitor: exit 1: cannot bind to nfnetlink socket');
  const before = counts.nft;
  await until('five samples', () => counts.host >= 8);
  t.ok(counts.nft >= before + 4, 'polled every sample meanwhile');
  t.equal(accepted.length, 1, 'one failure: forgiven, nothing to send');

  listener.fail('xtables-monitor: exit 1: cannot bind to nfnetlink socket');
  await until('the error reported', () => accepted.length === 2);
  t.same(listenerError(accepted[1]!), { source: 'xtables-monitor', message: 'xtables-monitor: exit 1: cannot bind to nfnetlink socket; reading the rulesets every 0.05 s meanwhile' });

  listener.start();
  await until('the error resolved', () => accepted.length === 3);
  t.notOk(listenerError(accepted[2]!), 'listening again through two samples');
  t.equal(agent.logs.filter((l) => l.includes('ruleset listener stopped')).length, 1, 'one log line for the outage, not one per failure');
  await agent.stop();
});

/** An aggregator from before HeadChange.by: the same validation, without that one field. */
function olderAggregator(): (report: NodeReport) => { status: number; body: object } {
  const schema = reportJsonSchema();
  const strip = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    const props = (node as { properties?: Record<string, unknown> }).properties;
    if (props && 'by' in props && 'from' in props && 'to' in props) delete props.by;
    for (const value of Object.values(node)) strip(value);
  };
  strip(schema);
  const validate = new Ajv({ allErrors: true, unicode: false, validateFormats: false, logger: false }).compile(schema);
  const current = compileReportValidator();
  return (report) => {
    if (current(report)) return { status: 400, body: { message: 'not even valid today' } };
    if (validate(report)) return { status: 202, body: {} };
    const { statusCode, message } = classifyError(Object.assign(new Error('invalid'), { validation: validate.errors, validationContext: 'body' }));
    return { status: statusCode, body: { message } };
  };
}

t.test('an aggregator older than the writers\' names: the report is sent again without them, and for an hour sent without them', async (t) => {
  let current = CALICO_FIRST;
  const { sources: src } = sources(() => current);
  const { url, accepted, refused } = await aggregator(t, olderAggregator());
  const listener = new StandIn();
  const agent = start(t, url, src, listener);
  await until('the first report', () => accepted.length === 1);
  current = ACME_FIRST;
  listener.commit('acme-agent', 'acme-INPUT');
  await until('the change delivered', () => accepted.length === 2);
  t.equal(refused.length, 1, 'refused once');
  t.match(refused[0], /^body\.headChanges\.\d+\.by: unknown field$/, 'as that aggregator words it');
  t.ok(accepted[1]!.headChanges!.some((c) => c.chain === 'INPUT' && c.to === 'acme-INPUT'));
  t.notOk(accepted[1]!.headChanges!.some((c) => 'by' in c), 'sent without the names');
  current = CALICO_FIRST;
  listener.commit('calico-felix', 'cali-INPUT');
  await until('the next change delivered', () => accepted.length === 3);
  t.equal(refused.length, 1, 'not offered again meanwhile');
  t.equal(accepted[2]!.headChanges!.filter((c) => c.chain === 'INPUT' && c.table === 'filter').length, 2, 'there and back');
  t.equal(agent.logs.filter((l) => l.includes('predates the writers')).length, 1, 'said once');
  await agent.stop();
});
