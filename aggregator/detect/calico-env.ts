// FELIX_CHAININSERTMODE as calico-node's Felix gets it. Two readers stand between the DaemonSet
// and the mode, and this follows both (pure: the workload's facts in, one answer out).
//
// The kubelet builds the container's environment (kubernetes pkg/kubelet/kubelet_pods.go,
// makeEnvironmentVariables): every envFrom source in order, each key of a ConfigMap or Secret
// becoming the variable prefix + key, a later source overriding an earlier one; then every env
// entry in order, so env wins over envFrom and, of two entries of one name, the last wins. A
// configMapKeyRef or secretKeyRef marked optional whose ConfigMap, Secret or key does not exist
// adds nothing (what came before stands); one not marked optional keeps the container from
// starting (CreateContainerConfigError), and so does a missing envFrom source that is not optional.
//
// Felix then reads it; quoted from projectcalico/calico at a0db560f0520 (2025-08-13, the Go
// module v1.11.0-cni-plugin.0.20250813170300-a0db560f0520), felix/:
// - config/env_var_loader.go, LoadConfigFromEnvironment(os.Environ()): `key :=
//   strings.ToLower(splits[0])`, `if strings.Index(key, "felix_") == 0`, then `result[paramName] =
//   value` into a map: the name in any case, and of two spellings the later in the environment.
// - config/config_params.go, (*Config).UpdateFrom: `if v == "" { ... Info("Ignoring empty
//   configuration parameter. Use value 'none' if your intention is to explicitly disable the
//   default value."); continue }`: an empty value is dropped as if the variable were not there, so
//   the next source down decides (SourcesInDescendingOrder: InternalOverride,
//   EnvironmentVariable, ConfigFile, DatastorePerHost, DatastoreGlobal), FelixConfiguration here.
// - config/config_params.go, the Config field ChainInsertMode, tagged
//   config:"oneof(insert,append);insert;non-zero,die-on-fail", parsed by config/param_types.go,
//   (*OneofListParam).Parse: `lowerCaseOptionsToCanonical[strings.ToLower(raw)]`, so "insert" or
//   "append" in any case, nothing trimmed. (*Config).resolve refuses "none" on a
//   non-zero field ("non-zero field cannot be set to none") and sets config.Err on any other value
//   (die-on-fail); daemon/daemon.go, Run, then logs "Failed to parse configuration environment
//   variable" and `continue configRetry`: Felix does not start.
import { FELIX_CHAININSERTMODE_LOWER, type CalicoFacts, type FelixEnvEntry, type WorkloadFacts } from '../cluster/facts.js';

export type CalicoMode = 'insert' | 'append';

/** Where the value came from, to say so and to change it there. */
export type EnvOrigin =
  | { kind: 'value'; name: string }
  | { kind: 'configMap'; configMap: string; key: string; via: 'env' | 'envFrom' };

export type FelixEnvSetting =
  // Felix gets no value from the environment: FelixConfiguration decides. `why`, when there is
  // something to say: an optional reference that added nothing, or an empty value Felix ignores.
  | { state: 'unset'; why?: string }
  | { state: 'mode'; mode: CalicoMode; value: string; where: string; origin: EnvOrigin }
  // Felix does not start with this value.
  | { state: 'invalid'; value: string; where: string; origin: EnvOrigin }
  // nodeprep cannot tell: a Secret, a ConfigMap it does not read, a reference it does not expand,
  // a ConfigMap missing while required. `check` is what the admin can run instead.
  | { state: 'unknown'; where: string; check: string };

const CANONICAL = 'FELIX_CHAININSERTMODE';

// One variable of the container's environment as the kubelet leaves it, or what nodeprep cannot
// know of it.
type Slot = { known: true; value: string; where: string; origin: EnvOrigin } | { known: false; where: string; check: string };

interface Context {
  workload: WorkloadFacts;
  calico: CalicoFacts;
}

/** A ConfigMap of the workload's namespace: its data, null when it does not exist, undefined when nodeprep cannot see it. */
function configMapData(ctx: Context, name: string): Record<string, string> | null | undefined {
  const cm = ctx.calico.configMaps.get(`${ctx.workload.namespace}/${name}`);
  if (cm) return cm.data; // the kubelet takes env values from data only, never binaryData
  return ctx.calico.readableConfigMaps.includes(name) ? null : undefined;
}

function notRead(ctx: Context, name: string): string {
  return `ConfigMap ${ctx.workload.namespace}/${name}, which nodeprep does not read (add ${name} to the chart's aggregator.clusterView.calicoConfigMaps, CALICO_CONFIGMAPS, and to its RBAC with it)`;
}

// nodeprep reads no Secret (least privilege: a Secret's other keys may be credentials, and the
// chart grants the aggregator no Secret at all); the admin can list a Secret's keys without values.
function secretCheck(ctx: Context, secret: string): string {
  return `kubectl -n ${ctx.workload.namespace} get secret ${secret} -o go-template='{{range $k, $v := .data}}{{$k}}{{"\\n"}}{{end}}' (its keys, no values)`;
}

const getCm = (ctx: Context, name: string) => `kubectl -n ${ctx.workload.namespace} get configmap ${name} -o yaml`;

/** The kubelet's environment for the variable, as far as nodeprep can see it. */
function kubeletEnvironment(ctx: Context, entries: readonly FelixEnvEntry[]): { slots: Map<string, Slot>; notes: string[]; blocked?: { where: string; check: string } } {
  const slots = new Map<string, Slot>();
  const notes: string[] = [];
  let blocked: { where: string; check: string } | undefined;
  const ns = ctx.workload.namespace;
  const required = (what: string, check: string): void => {
    blocked ??= { where: `${what} does not exist and is not optional: new calico-node pods cannot start (CreateContainerConfigError), and running ones keep the value they started with`, check };
  };
  for (const entry of entries) {
    switch (entry.from) {
      case 'configMapEnv': {
        const data = configMapData(ctx, entry.configMap);
        const via = `envFrom ConfigMap ${ns}/${entry.configMap}${entry.prefix ? ` (prefix ${entry.prefix})` : ''}`;
        // What nodeprep cannot read may set the variable; it is most likely spelled as Calico
        // documents it, so a later env entry of that name is taken to override it.
        if (data === undefined) slots.set(CANONICAL, { known: false, where: `may be set by ${via}: ${notRead(ctx, entry.configMap)}`, check: getCm(ctx, entry.configMap) });
        else if (data === null) {
          if (entry.optional) notes.push(`the optional ${via} does not exist`);
          else required(via, getCm(ctx, entry.configMap));
        } else {
          for (const [key, value] of Object.entries(data)) {
            const name = entry.prefix + key;
            if (name.toLowerCase() === FELIX_CHAININSERTMODE_LOWER) slots.set(name, { known: true, value, where: `${name} from ${via}, key ${key}`, origin: { kind: 'configMap', configMap: entry.configMap, key, via: 'envFrom' } });
          }
        }
        break;
      }
      case 'secretEnv':
        slots.set(CANONICAL, {
          known: false,
          where: `may be set by envFrom Secret ${ns}/${entry.secret}${entry.prefix ? ` (prefix ${entry.prefix})` : ''}, which nodeprep does not read: it reads no Secrets`,
          check: `${secretCheck(ctx, entry.secret)}; a key that reads ${FELIX_CHAININSERTMODE_LOWER.slice(entry.prefix.length)} in any case sets it`,
        });
        break;
      case 'value':
        // The kubelet expands $(VAR) in a value from the variables before it; nodeprep does not.
        if (entry.value.includes('$(')) slots.set(entry.name, { known: false, where: `${entry.name}=${entry.value} refers to other variables, which nodeprep does not expand`, check: `kubectl -n ${ns} exec ds/${ctx.workload.name} -c ${ctx.workload.felixEnv?.container ?? 'calico-node'} -- printenv ${entry.name}` });
        else slots.set(entry.name, { known: true, value: entry.value, where: `${entry.name}=${entry.value}`, origin: { kind: 'value', name: entry.name } });
        break;
      case 'configMapKey': {
        const data = configMapData(ctx, entry.configMap);
        const ref = `ConfigMap ${ns}/${entry.configMap} key ${entry.key}`;
        if (data === undefined) slots.set(entry.name, { known: false, where: `${entry.name} from ${notRead(ctx, entry.configMap)}, key ${entry.key}`, check: getCm(ctx, entry.configMap) });
        else if (data === null || !(entry.key in data)) {
          const missing = data === null ? `ConfigMap ${ns}/${entry.configMap}` : `key ${entry.key} of ConfigMap ${ns}/${entry.configMap}`;
          if (entry.optional) notes.push(`${entry.name} is taken from the optional ${missing}, which does not exist, so the kubelet does not set it`);
          else required(missing, getCm(ctx, entry.configMap));
        } else slots.set(entry.name, { known: true, value: data[entry.key]!, where: `${entry.name} from ${ref}`, origin: { kind: 'configMap', configMap: entry.configMap, key: entry.key, via: 'env' } });
        break;
      }
      case 'secretKey':
        slots.set(entry.name, {
          known: false,
          where: `${entry.name} from Secret ${ns}/${entry.secret} key ${entry.key}, which nodeprep does not read: it reads no Secrets`,
          check: `${secretCheck(ctx, entry.secret)}, then \`kubectl -n ${ns} get secret ${entry.secret} -o jsonpath='{.data.${entry.key}}' | base64 -d\` where you may read it`,
        });
        break;
      case 'field':
        slots.set(entry.name, { known: false, where: `${entry.name} from the pod's ${entry.field}, which is no mode`, check: `kubectl -n ${ns} get ds ${ctx.workload.name} -o yaml` });
        break;
    }
  }
  return { slots, notes, ...(blocked ? { blocked } : {}) };
}

/** What Felix makes of one variable's value. */
function felixReads(slot: Slot): FelixEnvSetting {
  if (!slot.known) return { state: 'unknown', where: slot.where, check: slot.check };
  if (slot.value === '') return { state: 'unset', why: `${slot.where} is empty, which Felix ignores as if it were not set` };
  const mode = slot.value.toLowerCase();
  if (mode === 'insert' || mode === 'append') return { state: 'mode', mode, value: slot.value, where: slot.where, origin: slot.origin };
  return { state: 'invalid', value: slot.value, where: slot.where, origin: slot.origin };
}

/** FELIX_CHAININSERTMODE as the Felix of this calico-node DaemonSet gets it. */
export function felixEnvSetting(workload: WorkloadFacts, calico: CalicoFacts): FelixEnvSetting {
  const entries = workload.felixEnv?.entries ?? [];
  const { slots, notes, blocked } = kubeletEnvironment({ workload, calico }, entries);
  if (blocked) return { state: 'unknown', ...blocked };
  const settings = [...slots.values()].map(felixReads);
  if (settings.length === 0) return notes.length > 0 ? { state: 'unset', why: notes.join('; ') } : { state: 'unset' };
  const [first, ...others] = settings;
  if (others.every((s) => sameOutcome(s, first!))) return first!;
  // Several spellings of the name reach the container; Felix keeps the last the runtime lists,
  // and the kubelet lists them in no set order.
  return {
    state: 'unknown',
    where: `${[...slots.keys()].join(' and ')} are all set, with different effects (${[...slots.values()].map((s) => s.where).join('; ')}), and Felix takes whichever the container runtime lists last`,
    check: `keep one of them: kubectl -n ${workload.namespace} set env daemonset/${workload.name} ${[...slots.keys()].slice(1).map((n) => `${n}-`).join(' ')}`,
  };
}

function sameOutcome(a: FelixEnvSetting, b: FelixEnvSetting): boolean {
  if (a.state === 'mode' && b.state === 'mode') return a.mode === b.mode;
  if (a.state === 'invalid' && b.state === 'invalid') return a.value === b.value;
  return a.state === 'unset' && b.state === 'unset';
}
