// The chart's alerts, as the real helm renders them, checked by the real promtool: `promtool
// check rules`, and `promtool test rules` with the unit tests in test/alerts/promtool/ (each alert
// fires on the series that should fire it and stays firing through an aggregator restart; a
// healthy cluster fires nothing, a restart included). Then what the chart promises around them:
// values that disable, add and label rules, a runbook per alert, one selector everywhere, and the
// codes the warning alert leaves to others matching the aggregator's own tables.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parse, stringify } from 'yaml';
import { READINESS_RULES } from '../../aggregator/illumio/readiness.js';
import { FINDING_SEVERITY } from '../../protocol/findings.js';
import { ROOT } from '../support/fixtures.js';
import { chartDir, render, type RenderOptions } from '../support/helm.js';
import { promtool, requirePrometheus } from '../support/prometheus.js';
import { alertsByName, renderMonitoring, ruleFile, ruleGroups, type RuleGroup } from './rendered.js';

const UNIT_DIR = path.join(ROOT, 'test/alerts/promtool');
const RUNBOOKS = path.join(ROOT, 'docs/runbooks');
const RUNBOOK_BASE = 'https://github.com/nodeprep/nodeprep/blob/main/docs/runbooks';
const SELECTOR = 'job="nodeprep-aggregator",namespace="nodeprep"';

const why = requirePrometheus();
if (why) t.plan(0, why);
else await run();

async function run(): Promise<void> {
  const work = mkdtempSync(path.join(tmpdir(), 'nodeprep-rules-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const alerts = alertsByName();
  const names = [...alerts.keys()];

  /** Writes a rule file and the unit tests beside it; promtool test rules on one of them. */
  const unitTest = (rules: string, file: string) => {
    writeFileSync(path.join(work, 'nodeprep-rules.yaml'), rules);
    copyFileSync(path.join(UNIT_DIR, file), path.join(work, file));
    return promtool(['test', 'rules', file], { cwd: work });
  };

  t.test('promtool check rules: the default rules and the ci/ monitoring values', async (t) => {
    const cases: [string, RenderOptions][] = [['defaults', {}], ['ci/monitoring-values.yaml', { valuesFiles: ['ci/monitoring-values.yaml'] }]];
    for (const [what, opts] of cases) {
      const file = path.join(work, `check-${what.replace(/\W/g, '-')}.yaml`);
      writeFileSync(file, ruleFile(opts));
      const res = promtool(['check', 'rules', file]);
      t.equal(res.status, 0, `${what}: promtool accepts them`, { output: res.output });
      const count = ruleGroups(opts).reduce((n, g) => n + g.rules.length, 0);
      t.match(res.output, new RegExp(`SUCCESS: ${count} rules found`), `${what}: all ${count} of them`);
    }
  });

  t.test('promtool check rules can fail: a broken expression is refused', async (t) => {
    const groups = ruleGroups();
    groups[0]!.rules[0]!.expr = 'max by (job (up)';
    const file = path.join(work, 'broken.yaml');
    writeFileSync(file, stringify({ groups }));
    const res = promtool(['check', 'rules', file]);
    t.not(res.status, 0);
    t.match(res.output, /parse error/);
  });

  const unitFiles = readdirSync(UNIT_DIR).filter((f) => f.endsWith('.yaml')).sort();
  t.test('a unit test file per alert, each expecting it to fire, and a healthy cluster', async (t) => {
    t.same(unitFiles, [...names.map((n) => `${n}.yaml`), 'healthy.yaml'].sort());
    for (const name of names) {
      const tests = (parse(readFileSync(path.join(UNIT_DIR, `${name}.yaml`), 'utf8')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] }).tests;
      const fires = tests.some((group) => (group.alert_rule_test ?? []).some((c) => c.alertname === name && c.exp_alerts.length > 0));
      t.ok(fires, `${name}.yaml expects ${name} to fire`);
    }
  });

  const rules = ruleFile();
  for (const file of unitFiles) {
    t.test(`promtool test rules ${file}`, async (t) => {
      const res = unitTest(rules, file);
      t.equal(res.status, 0, 'passes', { output: res.output });
      t.match(res.output, /SUCCESS/);
    });
  }

  t.test('the unit tests can fail: rules that would flap or fire on a blip are caught', async (t) => {
    // A `for` shorter than the 10 m window: a one-minute duplicate fires.
    const hasty = ruleGroups();
    const duplicate = hasty[0]!.rules.find((r) => r.alert === 'NodeprepMachineIdDuplicate')!;
    duplicate.for = '5m';
    const blip = unitTest(stringify({ groups: hasty }), 'healthy.yaml');
    t.not(blip.status, 0, 'healthy.yaml fails');
    t.match(blip.output, /FAILED/);
    // Aggregated by instance: the new pod's series is a new alert after a restart.
    const perPod = ruleGroups();
    for (const rule of perPod[0]!.rules) rule.expr = rule.expr.replace('max by (namespace, job)', 'max by (namespace, job, instance)');
    const flap = unitTest(stringify({ groups: perPod }), 'NodeprepMachineIdDuplicate.yaml');
    t.not(flap.status, 0, 'NodeprepMachineIdDuplicate.yaml fails');
    t.match(flap.output, /ALERTS_FOR_STATE/, 'on the time the alert became active');
  });

  t.test('each alert: a severity by the kubernetes-mixin convention, summary, description, runbook', async (t) => {
    for (const [name, rule] of alerts) {
      t.match(name, /^Nodeprep[A-Z][A-Za-z]+$/, `${name}: named Nodeprep...`);
      t.ok(['critical', 'warning', 'info'].includes(rule.labels?.severity ?? ''), `${name}: severity ${rule.labels?.severity}`);
      t.match(rule.for, /^\d+[mh]$/, `${name}: a for duration`);
      t.ok(rule.annotations?.summary && rule.annotations.description, `${name}: summary and description`);
      t.equal(rule.annotations?.runbook_url, `${RUNBOOK_BASE}/${name}.md`, `${name}: runbook_url`);
      const runbook = path.join(RUNBOOKS, `${name}.md`);
      t.ok(existsSync(runbook), `docs/runbooks/${name}.md exists`);
      if (!existsSync(runbook)) continue;
      const text = readFileSync(runbook, 'utf8');
      t.match(text, new RegExp(`^# ${name}\\n`), `${name}.md: titled with the alert`);
      for (const section of ['Meaning', 'Impact', 'Diagnosis', 'Fix']) t.match(text, new RegExp(`^## ${section}$`, 'm'), `${name}.md: ${section}`);
      const diagnosis = text.slice(text.indexOf('## Diagnosis'), text.indexOf('## Fix'));
      t.match(diagnosis, /^kubectl /m, `${name}.md: diagnosis with kubectl`);
      t.match(diagnosis, /^curl /m, `${name}.md: and curl`);
      t.match(text, new RegExp(`^Severity \\*\\*${rule.labels?.severity}\\*\\*: `, 'm'), `${name}.md: says why it is ${rule.labels?.severity}`);
    }
    const runbooks = readdirSync(RUNBOOKS).filter((f) => f !== 'README.md').sort();
    t.same(runbooks, names.map((n) => `${n}.md`).sort(), 'no runbook without its alert');
  });

  t.test('every expression selects this release\'s aggregator, and only it', async (t) => {
    const check = (rulesOf: RuleGroup['rules'], selector: string, what: string) => {
      for (const rule of rulesOf) {
        const selectors = [...rule.expr.matchAll(/\b(nodeprep_[a-z_]+|up)\{([^}]*)\}/g)];
        t.ok(selectors.length > 0, `${what} ${rule.alert}: selects series`);
        for (const [whole, , matchers] of selectors) t.ok(matchers!.startsWith(selector), `${what} ${rule.alert}: ${whole}`);
        t.notMatch(rule.expr, /\b(nodeprep_[a-z_]+|up)(\[|\)|\s|$)/, `${what} ${rule.alert}: no metric without the selector`);
      }
    };
    check([...alerts.values()], SELECTOR, 'release nodeprep:');
    check(ruleGroups({ release: 'edge', namespace: 'observability' })[0]!.rules, 'job="edge-nodeprep-aggregator",namespace="observability"', 'release edge:');
    check(ruleGroups({ set: { 'aggregator.prometheusRule.selector': 'job="np",cluster="eu"' } })[0]!.rules, 'job="np",cluster="eu"', 'a selector of one\'s own:');
  });

  t.test('values: disable single alerts, add rules and labels, choose the runbooks\' place', async (t) => {
    const set = {
      'aggregator.prometheusRule.defaultRules.disabled': ['NodeprepReadinessUnknown', 'NodeprepWarningFinding'],
      'aggregator.prometheusRule.defaultRules.additionalRuleLabels': { team: 'platform' },
      'aggregator.prometheusRule.additionalRules': [{ alert: 'MyNodeprepAlert', expr: 'nodeprep_ready == 0', for: '1h', labels: { severity: 'info' } }],
      'aggregator.prometheusRule.runbookBaseUrl': 'https://wiki.example.com/nodeprep/',
      'aggregator.prometheusRule.additionalLabels': { release: 'kube-prometheus-stack' },
    };
    const rule = renderMonitoring({ set }).find((o) => o.kind === 'PrometheusRule')!;
    t.equal(rule.metadata.labels.release, 'kube-prometheus-stack', 'the label kube-prometheus-stack selects rules by');
    const got = (rule.spec.groups as RuleGroup[])[0]!.rules;
    t.same(got.map((r) => r.alert), [...names.filter((n) => !set['aggregator.prometheusRule.defaultRules.disabled'].includes(n)), 'MyNodeprepAlert'], 'the disabled ones are left out; the own one comes last');
    for (const r of got.slice(0, -1)) {
      t.equal(r.labels?.team, 'platform', `${r.alert}: the additional label`);
      t.equal(r.annotations?.runbook_url, `https://wiki.example.com/nodeprep/${r.alert}.md`, `${r.alert}: the runbook's place, one slash`);
    }
    t.same(got.at(-1), set['aggregator.prometheusRule.additionalRules'][0], 'the own rule as given');
    const noDefaults = render({ set: { 'aggregator.prometheusRule.enabled': true, 'aggregator.prometheusRule.defaultRules.create': false } });
    t.notOk(noDefaults.some((o) => o.kind === 'PrometheusRule'), 'no default rules and none added: no PrometheusRule');
    t.notOk(render().some((o) => o.kind === 'PrometheusRule' || o.metadata.name.endsWith('-dashboard')), 'off by default');
    const remote = render({ set: { 'aggregator.prometheusRule.enabled': true, 'aggregator.enabled': false, 'agent.aggregatorUrl': 'https://a.example.com', clusterName: 'edge', 'auth.existingSecret': 't' } });
    t.notOk(remote.some((o) => o.kind === 'PrometheusRule'), 'no aggregator in the release: no rule about it');
  });

  t.test('values.schema.json lists exactly the alerts that can be disabled', async (t) => {
    const schema = JSON.parse(readFileSync(path.join(chartDir, 'values.schema.json'), 'utf8'));
    const disabled = schema.properties.aggregator.properties.prometheusRule.properties.defaultRules.properties.disabled;
    t.same([...disabled.items.enum].sort(), [...names].sort());
  });

  t.test('NodeprepWarningFinding leaves to other alerts exactly the codes they cover', async (t) => {
    const expr = alerts.get('NodeprepWarningFinding')!.expr;
    const excluded = /code!~"([^"]+)"/.exec(expr)![1]!.split('|').sort();
    const blocking = Object.values(READINESS_RULES).flatMap((rule) => rule.blocks);
    const nodeCodes = /code=~"([^"]+)"/.exec(alerts.get('NodeprepNodesNotReporting')!.expr)![1]!.split('|');
    t.same(excluded, [...new Set([...blocking, ...nodeCodes])].sort(), 'the codes that block a readiness step (NodeprepClusterNotReady) and the node codes (NodeprepNodesNotReporting)');
    for (const code of excluded) t.ok(code in FINDING_SEVERITY, `${code} is a finding code`);
    for (const code of ['MACHINE_ID_DUPLICATE']) t.match(alerts.get('NodeprepCriticalFinding')!.expr, new RegExp(`code!="${code}"`), `${code} pages once, as NodeprepMachineIdDuplicate`);
  });
}
