// The cluster view as data: what the aggregator knows of its own cluster from the Kubernetes
// API, reduced to the fields detection uses (kube-state-metrics' and NFD master's habit). The
// informers (informers.ts) keep these small objects; the detectors (detect/inventory.ts,
// detect/calico-config.ts) and the Illumio checks take them as plain data, as they take a
// NodeReport, so their tests need no API server.

export interface Taint {
  key: string;
  value?: string;
  effect: string; // NoSchedule | PreferNoSchedule | NoExecute
}

export interface Toleration {
  key?: string;
  operator?: string; // Exists | Equal (the default)
  value?: string;
  effect?: string;
}

export interface NodeFacts {
  name: string;
  createdAt: number; // ms since the epoch
  // The kubelet's copy of /etc/machine-id (status.nodeInfo.machineID), already derived to the
  // application-specific form (protocol/machine-id.ts): the raw ID is never kept.
  kubeletAppId?: string;
  systemUUID?: string;
  taints: Taint[];
}

export interface PodFacts {
  name: string;
  namespace: string;
  node: string; // spec.nodeName; '' while unscheduled
  phase: string;
  // Why it is not running, when it says: a container's waiting or terminated reason, or the pod's.
  reason?: string;
  ready: boolean;
}

export interface ContainerResources {
  name: string;
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

/**
 * One way FELIX_CHAININSERTMODE may reach the container that runs Felix, kept in the order the
 * kubelet applies them: every envFrom source first, then the env entries (kubelet_pods.go,
 * makeEnvironmentVariables). Only those that can set it are kept: env entries whose name Felix
 * reads as chaininsertmode, and envFrom sources whose prefix can begin such a name. ConfigMaps and
 * Secrets are in the workload's namespace.
 */
// Felix takes every environment variable whose name, in lower case, starts with felix_ as its
// parameter of that name (projectcalico/calico felix/config/env_var_loader.go,
// LoadConfigFromEnvironment): FELIX_CHAININSERTMODE in any case.
export const FELIX_CHAININSERTMODE_LOWER = 'felix_chaininsertmode';

export type FelixEnvEntry =
  | { from: 'value'; name: string; value: string }
  | { from: 'configMapKey'; name: string; configMap: string; key: string; optional: boolean }
  | { from: 'secretKey'; name: string; secret: string; key: string; optional: boolean }
  // valueFrom.fieldRef or resourceFieldRef: the pod's own fields, never a mode.
  | { from: 'field'; name: string; field: string }
  | { from: 'configMapEnv'; configMap: string; prefix: string; optional: boolean }
  | { from: 'secretEnv'; secret: string; prefix: string; optional: boolean };

export interface WorkloadFacts {
  namespace: string;
  name: string;
  tolerations: Toleration[];
  nodeSelector: Record<string, string>;
  containers: ContainerResources[];
  // For calico-node: where FELIX_CHAININSERTMODE may come from in the container that runs Felix
  // (the one named calico-node, else the first); absent when nothing there can set it.
  felixEnv?: { container: string; entries: FelixEnvEntry[] };
  // Managed by the Tigera operator: an ownerReference to the operator's Installation.
  operatorManaged: boolean;
}

export interface FelixConfigurationFacts {
  name: string; // default, node.<node name>, or another
  chainInsertMode?: string;
  nftablesMode?: string;
}

export interface ConfigMapFacts {
  namespace: string;
  name: string;
  data: Record<string, string>;
  binaryData: Record<string, string>;
}

export interface CalicoFacts {
  // FelixConfiguration objects by name; the CRD may be missing (Calico not installed).
  felixConfigurations: Map<string, FelixConfigurationFacts>;
  felixCrdServed: boolean;
  // The calico-node DaemonSet (kube-system for manifest installs, calico-system for the operator).
  calicoNode?: WorkloadFacts;
  // A Tigera operator Installation exists (operator.tigera.io/v1): it re-renders calico-node.
  installation?: { name: string };
  // ConfigMaps the aggregator may read (Calico's), by "<namespace>/<name>".
  configMaps: Map<string, ConfigMapFacts>;
  // The names it reads (CALICO_CONFIGMAPS, in every namespace), once listed: a ConfigMap of one of
  // these names that is not in configMaps does not exist; any other cannot be seen.
  readableConfigMaps: string[];
}

export interface IllumioFacts {
  // Nodes with a C-VEN pod (the DaemonSet's pods, scheduled).
  cvenNodes: Set<string>;
  cven?: WorkloadFacts;
  kubelink?: WorkloadFacts;
  // undefined: not known (yet); null: known not to exist.
  rootCa?: ConfigMapFacts | null;
}

export interface ClusterFacts {
  // The name the aggregator's own cluster goes by in node keys ('' for none).
  homeCluster: string;
  nodes: Map<string, NodeFacts>;
  // The nodeprep agent DaemonSet and its pods by node, to say why a node has no agent.
  agentDaemonSet?: WorkloadFacts;
  agentPods: Map<string, PodFacts>;
  calico: CalicoFacts;
  illumio: IllumioFacts;
}

/** Whether a toleration tolerates a taint (k8s.io/api/core/v1 Toleration.ToleratesTaint). */
export function tolerates(toleration: Toleration, taint: Taint): boolean {
  if (toleration.effect && toleration.effect !== taint.effect) return false;
  if (toleration.key && toleration.key !== taint.key) return false;
  // An empty key with Exists matches every taint.
  if (toleration.operator === 'Exists') return true;
  return (toleration.value ?? '') === (taint.value ?? '');
}

// The DaemonSet controller adds these to every DaemonSet pod (kubernetes pkg/controller/daemon/
// util/daemonset_util.go, AddOrUpdateDaemonPodTolerations; network-unavailable for hostNetwork
// pods such as the agent): a cordoned or pressured node still runs its agent.
const DAEMONSET_TOLERATIONS: Toleration[] = [
  { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute' },
  { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' },
  { key: 'node.kubernetes.io/disk-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/memory-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/pid-pressure', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node.kubernetes.io/network-unavailable', operator: 'Exists', effect: 'NoSchedule' },
];

/** The taints of a node that keep a DaemonSet's pods with these tolerations off it. */
export function untoleratedTaints(taints: readonly Taint[], tolerations: readonly Toleration[]): Taint[] {
  const all = [...tolerations, ...DAEMONSET_TOLERATIONS];
  // PreferNoSchedule only prefers: a DaemonSet's pods still land there.
  return taints.filter((taint) => taint.effect !== 'PreferNoSchedule' && !all.some((t) => tolerates(t, taint)));
}
