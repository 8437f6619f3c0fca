// Where Calico's insert mode is set, and whether the nodes follow it (design.md sections 6 and 9;
// projectcalico/calico felix/config/config_params.go: ChainInsertMode, "insert" or "append",
// case-insensitive). Precedence, highest first: FELIX_CHAININSERTMODE on calico-node, the
// FelixConfiguration node.<node name>, the FelixConfiguration default, the built-in Insert. An
// Installation (operator.tigera.io/v1) means the Tigera operator renders calico-node and reverts
// hand edits of it: the place to change is FelixConfiguration. Pure: facts in, findings out.
import { FINDING_NODES } from '../../protocol/findings.js';
import type { CalicoFacts, ClusterFacts, WorkloadFacts } from '../cluster/facts.js';
import { felixEnvSetting, type CalicoMode, type FelixEnvSetting } from './calico-env.js';
import { makeFinding, type FindingDraft } from './finding.js';

export type { CalicoMode } from './calico-env.js';

export interface ConfiguredMode {
  // undefined: the deciding place could not be read (a Secret, a ConfigMap nodeprep does not
  // read), or holds a value Felix refuses (it then does not start).
  mode: CalicoMode | undefined;
  // One key per deciding place, e.g. "env:kube-system/calico-node", "felix:node.worker-1".
  place: string;
  // The place in words, for messages and evidence.
  where: string;
  // The exact command that sets Append there, for this kind of install.
  fix: string;
}

const APPEND_PATCH = `'{"spec":{"chainInsertMode":"Append"}}'`;

function parseMode(value: string | undefined): CalicoMode | undefined {
  const v = value?.trim().toLowerCase();
  return v === 'insert' || v === 'append' ? v : undefined;
}

/** Whether Calico is installed as far as the API shows. */
export function calicoInstalled(calico: CalicoFacts): boolean {
  return calico.calicoNode !== undefined || calico.installation !== undefined || calico.felixConfigurations.size > 0;
}

function felixFix(calico: CalicoFacts, name: string): string {
  // The operator installs Calico's API server, through which kubectl edits FelixConfiguration;
  // a manifest install may not have it, and calicoctl works either way.
  return calico.installation
    ? `kubectl patch felixconfiguration ${name} --type merge -p ${APPEND_PATCH}`
    : `calicoctl patch felixconfiguration ${name} --patch ${APPEND_PATCH} (or kubectl patch felixconfiguration ${name} --type merge -p ${APPEND_PATCH} where Calico's API server is installed)`;
}

const ROLL = 'a ConfigMap change reaches environment variables only when the pods restart';

/** The variable decides (a mode, a value Felix refuses, or what nodeprep cannot read): the place, in words, and how to set Append there. */
function envPlace(ds: WorkloadFacts, calico: CalicoFacts, setting: Exclude<FelixEnvSetting, { state: 'unset' }>): ConfiguredMode {
  const workload = `${ds.namespace}/${ds.name}`;
  const container = ds.felixEnv?.container ?? 'calico-node';
  const on = `on DaemonSet ${workload} (container ${container})`;
  const place = `env:${workload}`;
  if (setting.state === 'unknown') {
    return { mode: undefined, place, where: `FELIX_CHAININSERTMODE ${on}: ${setting.where}`, fix: `see what it is (${setting.check}) and set it to Append there` };
  }
  const { origin } = setting;
  const fix =
    origin.kind === 'configMap'
      ? `kubectl -n ${ds.namespace} patch configmap ${origin.configMap} --type merge -p '{"data":{"${origin.key}":"Append"}}' && kubectl -n ${ds.namespace} rollout restart daemonset/${ds.name} (${ROLL})`
      : ds.operatorManaged
        ? `the Tigera operator manages ${workload} and reverts hand edits: remove the variable from whatever sets it (an overlay or admission policy), then ${felixFix(calico, 'default')}`
        : `kubectl -n ${ds.namespace} set env daemonset/${ds.name} -c ${container} ${origin.name}=Append (the variable overrides every FelixConfiguration)`;
  if (setting.state === 'invalid') {
    return {
      mode: undefined,
      place,
      where: `${setting.where}, ${on}: Felix takes only Insert or Append, in any case and without spaces, and does not start with "${setting.value}"`,
      fix,
    };
  }
  return { mode: setting.mode, place, where: `${setting.where}, ${on}`, fix };
}

/** The mode the configuration sets for one node, and the one place that decides it. */
export function configuredCalicoMode(calico: CalicoFacts, node: string): ConfiguredMode | undefined {
  if (!calicoInstalled(calico)) return undefined;
  const ds = calico.calicoNode;
  const env: FelixEnvSetting = ds?.felixEnv ? felixEnvSetting(ds, calico) : { state: 'unset' };
  if (env.state !== 'unset') return envPlace(ds!, calico, env);
  // The variable does not decide: FelixConfiguration does, and the words say why the variable does not.
  const envWords = env.why ? `FELIX_CHAININSERTMODE on DaemonSet ${ds!.namespace}/${ds!.name} does not decide (${env.why})` : undefined;
  const unset = envWords ? `, as ${envWords}` : '';
  for (const name of [`node.${node}`, 'default']) {
    const felix = calico.felixConfigurations.get(name);
    const mode = parseMode(felix?.chainInsertMode);
    if (felix && mode) return { mode, place: `felix:${name}`, where: `FelixConfiguration ${name} (spec.chainInsertMode: ${felix.chainInsertMode})${unset}`, fix: felixFix(calico, name) };
  }
  const hasDefault = calico.felixConfigurations.has('default');
  return {
    mode: 'insert',
    place: 'built-in',
    where: `Calico's built-in default (Insert): ${hasDefault ? 'FelixConfiguration default sets no chainInsertMode' : 'there is no FelixConfiguration'} and ${envWords ?? 'calico-node sets no FELIX_CHAININSERTMODE'}`,
    fix: hasDefault || calico.installation
      ? felixFix(calico, 'default')
      : 'create it: `calicoctl apply -f -` with `{"apiVersion":"projectcalico.org/v3","kind":"FelixConfiguration","metadata":{"name":"default"},"spec":{"chainInsertMode":"Append"}}`',
  };
}

export interface CalicoConfigInput {
  facts: ClusterFacts;
  keyOf: (name: string) => string;
  // Whether Illumio is on the node (a C-VEN pod, the host marker, its chains).
  illumioOnNode: (name: string) => boolean;
}

/**
 * CALICO_CONFIG_NOT_APPEND: one finding per place that sets Insert for some nodes, naming the
 * nodes (a sample) and the command for that place. Critical where Illumio is already there.
 */
export function detectCalicoConfigNotAppend(input: CalicoConfigInput): { drafts: FindingDraft[]; members: Map<string, string[]> } {
  const { facts } = input;
  const byPlace = new Map<string, { configured: ConfiguredMode; nodes: string[]; illumio: string[] }>();
  for (const node of facts.nodes.values()) {
    const configured = configuredCalicoMode(facts.calico, node.name);
    if (configured?.mode !== 'insert') continue;
    let group = byPlace.get(configured.place);
    if (!group) byPlace.set(configured.place, (group = { configured, nodes: [], illumio: [] }));
    const key = input.keyOf(node.name);
    group.nodes.push(key);
    if (input.illumioOnNode(node.name)) group.illumio.push(key);
  }
  const drafts: FindingDraft[] = [];
  const members = new Map<string, string[]>();
  for (const { configured, nodes, illumio } of byPlace.values()) {
    nodes.sort();
    const cluster = facts.homeCluster === '' ? 'this cluster' : `cluster ${facts.homeCluster}`;
    const draft = makeFinding('CALICO_CONFIG_NOT_APPEND', [facts.homeCluster, configured.place], {
      nodes: nodes.slice(0, FINDING_NODES),
      severity: illumio.length > 0 ? 'critical' : 'warning',
      message:
        `Calico is configured for Insert mode on ${nodes.length} node(s) of ${cluster} by ${configured.where}` +
        (illumio.length > 0 ? `; Illumio is already on ${illumio.length} of them, and both want the first position` : '; not ready for Illumio\'s C-VEN'),
      remediation:
        `Set Append where it is decided: ${configured.fix}. ` +
        'Felix applies the change by itself within its refresh interval and moves its jumps to the end of the chains; the next reports show it (CALICO_CONFIG_DRIFT says when a node does not follow).',
      evidence: { place: configured.place, where: configured.where, nodeCount: nodes.length, illumioNodes: illumio.length, operatorManaged: facts.calico.installation !== undefined },
    });
    drafts.push(draft);
    members.set(draft.id, nodes);
  }
  return { drafts, members };
}

export interface DriftInput {
  facts: ClusterFacts;
  keyOf: (name: string) => string;
  // The mode the node's own rules show (not taken from the configuration), if any.
  observed: (key: string) => CalicoMode | undefined;
  // When each node was first seen disagreeing, from the previous call.
  previous: ReadonlyMap<string, number>;
  now: number;
  graceMs: number;
}

/**
 * CALICO_CONFIG_DRIFT: nodes whose rules disagree with their configured mode for longer than the
 * grace period (Felix re-applies within its refresh, 90-180 s, so twice that by default). One
 * finding per direction. Returns the disagreements to carry into the next call.
 */
export function detectCalicoDrift(input: DriftInput): { drafts: FindingDraft[]; disagreeing: Map<string, number>; members: Map<string, string[]> } {
  const { facts, now } = input;
  const disagreeing = new Map<string, number>();
  const drifted: Record<CalicoMode, { key: string; since: number; where: string }[]> = { insert: [], append: [] };
  for (const node of facts.nodes.values()) {
    const configured = configuredCalicoMode(facts.calico, node.name);
    const key = input.keyOf(node.name);
    const observed = input.observed(key);
    if (!configured?.mode || !observed || observed === configured.mode) continue;
    const since = input.previous.get(key) ?? now;
    disagreeing.set(key, since);
    if (now - since >= input.graceMs) drifted[configured.mode].push({ key, since, where: configured.where });
  }
  const drafts: FindingDraft[] = [];
  const members = new Map<string, string[]>();
  for (const configured of ['append', 'insert'] as const) {
    const nodes = drifted[configured];
    if (nodes.length === 0) continue;
    nodes.sort((a, b) => (a.key < b.key ? -1 : 1));
    const observed = configured === 'append' ? 'Insert' : 'Append';
    const keys = nodes.map((n) => n.key);
    const draft = makeFinding('CALICO_CONFIG_DRIFT', [facts.homeCluster, configured], {
      nodes: keys.slice(0, FINDING_NODES),
      message: `${nodes.length} node(s) still show Calico in ${observed} mode although the configuration says ${configured === 'append' ? 'Append' : 'Insert'} (${nodes[0]!.where}), for more than ${Math.round(input.graceMs / 1000)} s`,
      remediation:
        configured === 'append'
          ? 'Felix on these nodes has not applied Append. Check that calico-node runs there and is ready, and that nothing overrides the setting on its pods ' +
            '(`kubectl -n <calico namespace> get pod -l k8s-app=calico-node --field-selector spec.nodeName=<node> -o yaml | grep -A1 FELIX_CHAININSERTMODE`); ' +
            'restarting calico-node on the node makes it read the configuration again (`kubectl -n <calico namespace> delete pod -l k8s-app=calico-node --field-selector spec.nodeName=<node>`).'
          : 'The configuration says Insert, yet Calico\'s jumps come last on these nodes: another product put its rules above them, or calico-node there runs another configuration. ' +
            'Settle it in the configuration (CALICO_CONFIG_NOT_APPEND names the place) rather than on the nodes.',
      evidence: { configured, observed: observed.toLowerCase(), nodeCount: nodes.length, since: new Date(Math.min(...nodes.map((n) => n.since))).toISOString() },
    });
    drafts.push(draft);
    members.set(draft.id, keys);
  }
  return { drafts, disagreeing, members };
}
