// The chart's PrometheusRule and dashboard as the real helm renders them, in the forms Prometheus
// and Grafana read: a rule file, and the dashboard JSON.
import { stringify } from 'yaml';
import { render, type K8sObject, type RenderOptions } from '../support/helm.js';

export interface RuleGroup {
  name: string;
  rules: { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }[];
}

const MONITORING = { 'aggregator.prometheusRule.enabled': true, 'aggregator.grafanaDashboard.enabled': true };

/** Every object with the rule and the dashboard on (release nodeprep in namespace nodeprep unless set). */
export function renderMonitoring(opts: RenderOptions = {}): K8sObject[] {
  return render({ ...opts, set: { ...MONITORING, ...opts.set } });
}

/** The PrometheusRule's groups. */
export function ruleGroups(opts: RenderOptions = {}): RuleGroup[] {
  const rule = renderMonitoring(opts).find((o) => o.kind === 'PrometheusRule');
  if (!rule) throw new Error('no PrometheusRule rendered');
  return rule.spec.groups as RuleGroup[];
}

/** The PrometheusRule as a Prometheus rule file (the operator writes its spec the same way). */
export function ruleFile(opts: RenderOptions = {}): string {
  return stringify({ groups: ruleGroups(opts) });
}

/** The alerts of the default values, by name. */
export function alertsByName(opts: RenderOptions = {}): Map<string, RuleGroup['rules'][number]> {
  return new Map(ruleGroups(opts).flatMap((g) => g.rules.filter((r) => r.alert).map((r) => [r.alert!, r] as const)));
}

export interface Dashboard {
  uid: string;
  title: string;
  panels: { id: number; type: string; title: string; targets?: { expr: string; legendFormat?: string; refId: string; instant?: boolean }[]; datasource?: { type: string; uid: string } }[];
  templating: { list: { name: string; type: string; query: unknown; datasource?: { type: string; uid: string } }[] };
}

/** The dashboard from the rendered ConfigMap. */
export function dashboard(opts: RenderOptions = {}): Dashboard {
  const configMap = renderMonitoring(opts).find((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-dashboard'));
  if (!configMap) throw new Error('no dashboard ConfigMap rendered');
  return JSON.parse(configMap.data['nodeprep.json'] as string) as Dashboard;
}
