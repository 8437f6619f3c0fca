// A source that fails once is not an error yet (agent/source-hysteresis.ts): the agent's sources
// replaced by fakes that fail on cue, through collect.ts's Sources and run.ts's RunDeps.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { parseAgentArgs } from '../../agent/cli.js';
import { assembleReport, collectSample, type Sources } from '../../agent/collect.js';
import { runAgent } from '../../agent/run.js';
import { SourceHysteresis } from '../../agent/source-hysteresis.js';
import type { IptablesRuleset, NodeReport } from '../../protocol/report.js';

const SAVE = 'iptables-nft-save';
const options = { hostRoot: '/nonexistent', nodeName: 'n1' };
const ruleset = (ruleCount: number): IptablesRuleset => ({ family: 'ipv4', backend: 'nft', source: 'host', verdict: 'ok', ruleCount, tables: [] });

/** Sources whose iptables-nft-save answers as `script` says, call by call ('ok' or 'fail'). */
function scripted(script: readonly ('ok' | 'fail')[], onEnd?: () => void): Sources & { calls: number } {
  const sources = {
    calls: 0,
    machineId: async () => ({ file: { status: 'ok' as const, appId: 'a'.repeat(32) } }),
    illumio: async () => ({ hostDataDir: false, serverVen: false }),
    nft: async () => ({ tables: [], errors: [] }),
    iptables: async () => {
      const call = sources.calls++;
      if (call >= script.length) onEnd?.();
      // Each good answer is told apart by its ruleCount: the sample number, from 1.
      return script[call] === 'fail' ? [{ source: SAVE, error: `${SAVE}: no answer within 5 s` }] : [{ source: SAVE, ruleset: ruleset(call + 1) }];
    },
  };
  return sources;
}

const saveError = (report: NodeReport) => report.errors.some((e) => e.source === SAVE);
const ruleCount = (report: NodeReport) => report.iptables[0]?.ruleCount;

t.test('an error enters the report after two failures in a row, and leaves it after two successes', async (t) => {
  const script = ['ok', 'fail', 'ok', 'fail', 'fail', 'ok', 'fail', 'ok', 'ok', 'fail'] as const;
  const sources = scripted(script);
  const hysteresis = new SourceHysteresis();
  const reports: NodeReport[] = [];
  for (let i = 0; i < script.length; i++) reports.push(assembleReport(hysteresis.smooth(await collectSample(options, sources)), options).report);
  t.same(reports.map(saveError), [false, false, false, false, true, true, true, true, false, false], 'error entry per sample');
  // A forgiven failure carries the last good ruleset; a reported one has none to show.
  t.same(reports.map(ruleCount), [1, 1, 3, 3, undefined, 6, undefined, 8, 9, 9], 'ruleset per sample (its sample number)');
  t.same(reports[4]!.errors, [{ source: SAVE, message: `${SAVE}: no answer within 5 s` }]);
  t.ok(reports.every((r) => r.machineId.etc.status === 'ok' && r.errors.every((e) => e.source === SAVE)), 'the other sources are untouched');
});

t.test('without a good result to carry (the first sample), a failure is reported at once', async (t) => {
  const hysteresis = new SourceHysteresis();
  const first = assembleReport(hysteresis.smooth(await collectSample(options, scripted(['fail']))), options).report;
  t.ok(saveError(first), 'an absent ruleset must not pass for a healthy one');
  t.same(first.iptables, []);
});

t.test('a source that stops running (legacy tables gone) starts afresh when it comes back', async (t) => {
  const hysteresis = new SourceHysteresis();
  const part = (error?: string) => ({
    etc: { source: 'etc', value: { status: 'ok' as const } },
    dbus: { source: 'dbus', value: { status: 'missing' as const } },
    illumio: { source: 'illumio', value: { hostDataDir: false, serverVen: false } },
    nft: { source: 'nft', value: [] },
    rulesets: error === 'absent' ? [] : [{ source: 'iptables-legacy-save', value: error ? undefined : ruleset(7), ...(error ? { error } : {}) }],
  });
  hysteresis.smooth(part());
  hysteresis.smooth(part('absent'));
  const back = hysteresis.smooth(part('exit 1'));
  t.same(back.rulesets, [{ source: 'iptables-legacy-save', value: undefined, error: 'exit 1' }], 'nothing stale carried over the gap');
});

async function aggregator(t: Test) {
  const received: NodeReport[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push(JSON.parse(body) as NodeReport);
      res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

t.test('the run loop: one slow iptables-save sends nothing; two in a row are reported once, then resolved', async (t) => {
  const { url, received } = await aggregator(t);
  const stop = new AbortController();
  // Every good answer the same ruleset: the agent sends only when the facts change.
  const script = ['ok', 'fail', 'ok', 'ok', 'fail', 'fail', 'ok', 'ok'] as const;
  const base = scripted(script, () => stop.abort());
  const sources: Sources = { ...base, iptables: async (procNet) => (await base.iptables(procNet)).map((o) => (o.ruleset ? { ...o, ruleset: ruleset(1) } : o)) };
  const cmd = parseAgentArgs(['run', '--node-name', 'n1', '--host-root', '/nonexistent', '--aggregator-url', url, '--sample-interval', '0.01', '--heartbeat-interval', '3600'], {});
  t.equal(await runAgent(cmd, pino({ level: 'silent' }), { sources, signal: stop.signal }), 0);
  t.equal(base.calls, script.length + 1, 'every scripted sample ran');
  // Without the hysteresis: [false, true, false, true, false], a raise and a resolve per blip.
  t.same(received.map(saveError), [false, true, true, false], 'sent: healthy; the error; the ruleset back, error kept; healthy');
});
