// The cluster view: informers on what the checks read (design.md section 9), each object reduced
// to the fields used (facts.ts) as it arrives. facts() puts the caches together as ClusterFacts
// for the engine, whenever they changed (debounced). Everything here only reads.
import type { Logger } from 'pino';
import { appSpecificMachineId } from '../../protocol/machine-id.js';
import type { KubeApi } from './api.js';
import { FELIX_CHAININSERTMODE_LOWER } from './facts.js';
import type {
  ClusterFacts,
  ConfigMapFacts,
  ContainerResources,
  FelixConfigurationFacts,
  FelixEnvEntry,
  NodeFacts,
  PodFacts,
  Taint,
  Toleration,
  WorkloadFacts,
} from './facts.js';
import { Supervised, type InformerState, type Slim } from './informers.js';

export interface ClusterViewConfig {
  homeCluster: string;
  // "<namespace>/<name>" of the agents' ServiceAccount: their pods and DaemonSet are found by it.
  agentServiceAccount?: string;
  cvenNamespace: string;
  cvenDaemonSet: string;
  kubelinkDeployment: string;
  // "<namespace>/<name>" of the root CA ConfigMap.
  rootCaConfigMap: string;
  // Names of ConfigMaps calico-node may take FELIX_CHAININSERTMODE from (RBAC allows these only).
  calicoConfigMaps: string[];
}

// ---- reduce: the raw API objects (loosely typed JSON) to facts ----

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Raw = any;

const meta = (raw: Raw) => ({ name: String(raw?.metadata?.name ?? ''), namespace: raw?.metadata?.namespace as string | undefined, resourceVersion: raw?.metadata?.resourceVersion as string | undefined });

export function slimNode(raw: Raw): Slim<NodeFacts> {
  const info = raw?.status?.nodeInfo ?? {};
  const kubeletAppId = typeof info.machineID === 'string' ? appSpecificMachineId(info.machineID.trim()) : undefined;
  return {
    metadata: meta(raw),
    name: String(raw?.metadata?.name ?? ''),
    createdAt: Date.parse(raw?.metadata?.creationTimestamp ?? '') || 0,
    ...(kubeletAppId ? { kubeletAppId } : {}),
    ...(typeof info.systemUUID === 'string' && info.systemUUID !== '' ? { systemUUID: info.systemUUID } : {}),
    taints: ((raw?.spec?.taints ?? []) as Raw[]).map((t): Taint => ({ key: String(t.key ?? ''), ...(t.value ? { value: String(t.value) } : {}), effect: String(t.effect ?? '') })),
  };
}

function podReason(raw: Raw): string | undefined {
  for (const status of (raw?.status?.containerStatuses ?? []) as Raw[]) {
    const reason = status?.state?.waiting?.reason ?? status?.state?.terminated?.reason;
    if (reason) return String(reason);
  }
  if (raw?.status?.reason) return String(raw.status.reason);
  const unscheduled = ((raw?.status?.conditions ?? []) as Raw[]).find((c) => c.type === 'PodScheduled' && c.status === 'False');
  return unscheduled?.reason ? String(unscheduled.reason) : undefined;
}

export function slimPod(raw: Raw): Slim<PodFacts & { ownerDaemonSet?: string }> {
  const owner = ((raw?.metadata?.ownerReferences ?? []) as Raw[]).find((o) => o.kind === 'DaemonSet');
  const reason = podReason(raw);
  return {
    metadata: meta(raw),
    name: String(raw?.metadata?.name ?? ''),
    namespace: String(raw?.metadata?.namespace ?? ''),
    node: String(raw?.spec?.nodeName ?? ''),
    phase: String(raw?.status?.phase ?? 'Unknown'),
    ...(reason ? { reason } : {}),
    ready: ((raw?.status?.conditions ?? []) as Raw[]).some((c) => c.type === 'Ready' && c.status === 'True'),
    ...(owner ? { ownerDaemonSet: String(owner.name) } : {}),
  };
}

function containers(raw: Raw): ContainerResources[] {
  return ((raw?.spec?.template?.spec?.containers ?? []) as Raw[]).map((c) => ({
    name: String(c.name ?? ''),
    ...(c.resources?.requests ? { requests: stringMap(c.resources.requests) } : {}),
    ...(c.resources?.limits ? { limits: stringMap(c.resources.limits) } : {}),
  }));
}

function stringMap(o: Raw): Record<string, string> {
  return Object.fromEntries(Object.entries(o ?? {}).map(([k, v]) => [k, String(v)]));
}

/** What can set FELIX_CHAININSERTMODE in calico-node's Felix container, in the kubelet's order. */
function felixEnv(pod: Raw): WorkloadFacts['felixEnv'] {
  const containers = (pod.containers ?? []) as Raw[];
  const container = containers.find((c) => c.name === 'calico-node') ?? containers[0];
  if (!container) return undefined;
  const entries: FelixEnvEntry[] = [];
  for (const source of (container.envFrom ?? []) as Raw[]) {
    // The kubelet names each key's variable prefix + key: only a prefix that can begin the name matters.
    const prefix = String(source.prefix ?? '');
    if (!FELIX_CHAININSERTMODE_LOWER.startsWith(prefix.toLowerCase())) continue;
    const ref = source.configMapRef ?? source.secretRef;
    const optional = ref?.optional === true;
    if (source.configMapRef) entries.push({ from: 'configMapEnv', configMap: String(ref.name ?? ''), prefix, optional });
    else if (source.secretRef) entries.push({ from: 'secretEnv', secret: String(ref.name ?? ''), prefix, optional });
  }
  for (const env of (container.env ?? []) as Raw[]) {
    const name = String(env.name ?? '');
    if (name.toLowerCase() !== FELIX_CHAININSERTMODE_LOWER) continue;
    const from = env.valueFrom;
    if (from?.configMapKeyRef) {
      entries.push({ from: 'configMapKey', name, configMap: String(from.configMapKeyRef.name ?? ''), key: String(from.configMapKeyRef.key ?? ''), optional: from.configMapKeyRef.optional === true });
    } else if (from?.secretKeyRef) {
      entries.push({ from: 'secretKey', name, secret: String(from.secretKeyRef.name ?? ''), key: String(from.secretKeyRef.key ?? ''), optional: from.secretKeyRef.optional === true });
    } else if (from) {
      entries.push({ from: 'field', name, field: String(from.fieldRef?.fieldPath ?? from.resourceFieldRef?.resource ?? 'unknown') });
    } else entries.push({ from: 'value', name, value: String(env.value ?? '') });
  }
  return entries.length > 0 ? { container: String(container.name ?? ''), entries } : undefined;
}

export function slimWorkload(raw: Raw): Slim<WorkloadFacts & { serviceAccount: string }> {
  const pod = raw?.spec?.template?.spec ?? {};
  // Only calico-node's Felix reads the variable; other workloads keep nothing of their env.
  const felix = raw?.metadata?.name === 'calico-node' ? felixEnv(pod) : undefined;
  const owners = (raw?.metadata?.ownerReferences ?? []) as Raw[];
  return {
    metadata: meta(raw),
    namespace: String(raw?.metadata?.namespace ?? ''),
    name: String(raw?.metadata?.name ?? ''),
    tolerations: ((pod.tolerations ?? []) as Raw[]).map((t): Toleration => ({ ...(t.key ? { key: String(t.key) } : {}), ...(t.operator ? { operator: String(t.operator) } : {}), ...(t.value ? { value: String(t.value) } : {}), ...(t.effect ? { effect: String(t.effect) } : {}) })),
    nodeSelector: stringMap(pod.nodeSelector),
    containers: containers(raw),
    ...(felix ? { felixEnv: felix } : {}),
    operatorManaged: owners.some((o) => o.kind === 'Installation' && String(o.apiVersion ?? '').startsWith('operator.tigera.io/')),
    serviceAccount: String(pod.serviceAccountName ?? pod.serviceAccount ?? 'default'),
  };
}

export function slimFelix(raw: Raw): Slim<FelixConfigurationFacts> {
  return {
    metadata: meta(raw),
    name: String(raw?.metadata?.name ?? ''),
    ...(raw?.spec?.chainInsertMode ? { chainInsertMode: String(raw.spec.chainInsertMode) } : {}),
    ...(raw?.spec?.nftablesMode ? { nftablesMode: String(raw.spec.nftablesMode) } : {}),
  };
}

export function slimConfigMap(raw: Raw): Slim<ConfigMapFacts> {
  return { metadata: meta(raw), namespace: String(raw?.metadata?.namespace ?? ''), name: String(raw?.metadata?.name ?? ''), data: stringMap(raw?.data), binaryData: stringMap(raw?.binaryData) };
}

const slimName = (raw: Raw): Slim<{ name: string }> => ({ metadata: meta(raw), name: String(raw?.metadata?.name ?? '') });

// ---- the view ----

export interface ViewStatus {
  state: 'syncing' | 'synced' | 'degraded';
  resources: Record<string, InformerState>;
}

export class ClusterView {
  private readonly nodes: Supervised<NodeFacts>;
  private readonly daemonSets: Supervised<WorkloadFacts & { serviceAccount: string }>;
  private readonly agentPods: Supervised<PodFacts> | undefined;
  private readonly cvenPods: Supervised<PodFacts & { ownerDaemonSet?: string }>;
  private readonly kubelink: Supervised<WorkloadFacts & { serviceAccount: string }>;
  private readonly felix: Supervised<FelixConfigurationFacts>;
  private readonly installations: Supervised<{ name: string }>;
  private readonly rootCa: Supervised<ConfigMapFacts>;
  private readonly calicoConfigMaps: Supervised<ConfigMapFacts>[];
  private readonly all: Supervised<unknown>[];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    api: KubeApi,
    private readonly config: ClusterViewConfig,
    log: Logger,
    onChange: () => void,
    onState?: (resource: string, state: InformerState, reason?: string) => void,
    private readonly debounceMs = 500,
  ) {
    const options = {
      log,
      onState,
      onChange: () => {
        if (this.timer) return;
        this.timer = setTimeout(() => {
          this.timer = undefined;
          if (this.synced) onChange();
        }, this.debounceMs);
        this.timer.unref();
      },
    };
    const [rootNs, rootName] = splitRef(config.rootCaConfigMap);
    this.nodes = new Supervised(api, { name: 'nodes', path: '/api/v1/nodes', slim: slimNode }, options);
    this.daemonSets = new Supervised(api, { name: 'daemonsets', path: '/apis/apps/v1/daemonsets', slim: slimWorkload }, options);
    const agent = config.agentServiceAccount ? splitRef(config.agentServiceAccount) : undefined;
    this.agentPods = agent
      ? new Supervised(api, { name: 'agent pods', path: `/api/v1/namespaces/${agent[0]}/pods`, slim: slimPod, fieldSelector: `spec.serviceAccountName=${agent[1]}` }, options)
      : undefined;
    this.cvenPods = new Supervised(api, { name: 'C-VEN pods', path: `/api/v1/namespaces/${config.cvenNamespace}/pods`, slim: slimPod }, options);
    this.kubelink = new Supervised(api, { name: 'Kubelink deployment', path: `/apis/apps/v1/namespaces/${config.cvenNamespace}/deployments`, slim: slimWorkload, fieldSelector: `metadata.name=${config.kubelinkDeployment}` }, options);
    this.felix = new Supervised(api, { name: 'felixconfigurations', path: '/apis/crd.projectcalico.org/v1/felixconfigurations', slim: slimFelix }, options);
    this.installations = new Supervised(api, { name: 'installations', path: '/apis/operator.tigera.io/v1/installations', slim: slimName }, options);
    // The aggregator may read only these ConfigMaps (RBAC resourceNames), so every list and
    // watch names one with a field selector.
    this.rootCa = new Supervised(api, { name: 'root CA configmap', path: `/api/v1/namespaces/${rootNs}/configmaps`, slim: slimConfigMap, fieldSelector: `metadata.name=${rootName}` }, options);
    this.calicoConfigMaps = config.calicoConfigMaps.map(
      (name) => new Supervised(api, { name: `configmap ${name}`, path: '/api/v1/configmaps', slim: slimConfigMap, fieldSelector: `metadata.name=${name}` }, options),
    );
    this.all = [this.nodes, this.daemonSets, ...(this.agentPods ? [this.agentPods] : []), this.cvenPods, this.kubelink, this.felix, this.installations, this.rootCa, ...this.calicoConfigMaps] as Supervised<unknown>[];
  }

  start(): void {
    for (const informer of this.all) informer.start();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await Promise.all(this.all.map((i) => i.stop()));
  }

  /** Every informer listed once (or its resource is not served): the facts describe the cluster. */
  get synced(): boolean {
    return this.all.every((i) => i.everSynced || i.state === 'not served');
  }

  status(): ViewStatus {
    const resources = Object.fromEntries(this.all.map((i) => [i.spec.name, i.state]));
    const state = !this.synced ? 'syncing' : this.all.every((i) => i.state === 'synced' || i.state === 'not served') ? 'synced' : 'degraded';
    return { state, resources };
  }

  facts(): ClusterFacts {
    const nodes = new Map<string, NodeFacts>();
    for (const node of this.nodes.cache.list()) nodes.set(node.name, node);
    const daemonSets = this.daemonSets.cache.list();
    const agentSa = this.config.agentServiceAccount ? splitRef(this.config.agentServiceAccount) : undefined;
    const agentDaemonSet = agentSa ? daemonSets.find((d) => d.namespace === agentSa[0] && d.serviceAccount === agentSa[1]) : undefined;
    const agentPods = new Map<string, PodFacts>();
    for (const pod of this.agentPods?.cache.list() ?? []) if (pod.node) agentPods.set(pod.node, pod);
    const calicoNode = daemonSets.find((d) => d.name === 'calico-node' && (d.namespace === 'calico-system' || d.namespace === 'kube-system'));
    const felixConfigurations = new Map<string, FelixConfigurationFacts>();
    for (const f of this.felix.cache.list()) felixConfigurations.set(f.name, f);
    const configMaps = new Map<string, ConfigMapFacts>();
    for (const informer of this.calicoConfigMaps) for (const cm of informer.cache.list()) configMaps.set(`${cm.namespace}/${cm.name}`, cm);
    const installation = this.installations.cache.list()[0];
    const cvenNodes = new Set<string>();
    for (const pod of this.cvenPods.cache.list()) {
      if (pod.ownerDaemonSet === this.config.cvenDaemonSet && pod.node && pod.phase !== 'Succeeded' && pod.phase !== 'Failed') cvenNodes.add(pod.node);
    }
    const cven = daemonSets.find((d) => d.namespace === this.config.cvenNamespace && d.name === this.config.cvenDaemonSet);
    const kubelink = this.kubelink.cache.list()[0];
    const rootCa = this.rootCa.everSynced ? (this.rootCa.cache.list()[0] ?? null) : undefined;
    return {
      homeCluster: this.config.homeCluster,
      nodes,
      ...(agentDaemonSet ? { agentDaemonSet } : {}),
      agentPods,
      calico: {
        felixConfigurations,
        felixCrdServed: this.felix.state !== 'not served',
        ...(calicoNode ? { calicoNode } : {}),
        ...(installation ? { installation: { name: installation.name } } : {}),
        configMaps,
        readableConfigMaps: this.config.calicoConfigMaps.filter((_, i) => this.calicoConfigMaps[i]!.everSynced),
      },
      illumio: { cvenNodes, ...(cven ? { cven } : {}), ...(kubelink ? { kubelink } : {}), ...(rootCa === undefined ? {} : { rootCa }) },
    };
  }
}

function splitRef(ref: string): [string, string] {
  const slash = ref.indexOf('/');
  return [ref.slice(0, slash), ref.slice(slash + 1)];
}
