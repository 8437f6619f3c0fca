// Metric names and help by the book: `promtool check metrics` on what the real aggregator serves
// at /metrics, once reports were accepted and refused (so counters, gauges and the histogram all
// carry samples). prom-client's process metrics are included: they are served too.
import t from 'tap';
import { promtool, requirePrometheus } from '../support/prometheus.js';
import { startLocalAggregator } from './local-aggregator.js';

const why = requirePrometheus();
if (why) t.plan(0, why);
else await run();

async function run(): Promise<void> {
  const { aggregator, sendRound } = await startLocalAggregator(t);
  await sendRound();
  const metrics = await aggregator.get<string>('/metrics');
  t.equal(metrics.status, 200);
  const text = metrics.body;

  t.test('promtool check metrics: clean', async (t) => {
    for (const name of ['nodeprep_reports_received_total', 'nodeprep_reports_rejected_total', 'nodeprep_report_ingest_seconds_bucket', 'nodeprep_findings_active', 'nodeprep_aggregator_process_cpu_seconds_total']) {
      t.match(text, new RegExp(`^${name}`, 'm'), `${name} is served`);
    }
    const res = promtool(['check', 'metrics'], { input: text });
    t.equal(res.output.trim(), '', 'no complaint');
    t.equal(res.status, 0);
  });

  t.test('what promtool asked for: no gauge named like a counter, totals still there by type', async (t) => {
    for (const name of ['handles', 'requests', 'resources']) {
      t.notMatch(text, new RegExp(`^nodeprep_aggregator_nodejs_active_${name}_total`, 'm'), `no nodeprep_aggregator_nodejs_active_${name}_total`);
      t.match(text, new RegExp(`^# TYPE nodeprep_aggregator_nodejs_active_${name} gauge`, 'm'), `nodeprep_aggregator_nodejs_active_${name} by type: sum them for the total`);
    }
  });

  t.test('the check can fail: a gauge named like a counter is refused', async (t) => {
    const res = promtool(['check', 'metrics'], { input: `${text}# HELP nodeprep_things_total Things.\n# TYPE nodeprep_things_total gauge\nnodeprep_things_total 1\n` });
    t.not(res.status, 0);
    t.match(res.output, /nodeprep_things_total non-counter metrics should not have "_total" suffix/);
  });
}
