// ILLUMIO_UNDERSIZED: where C-VEN and Kubelink are already deployed, a container whose requests or
// limits are below the tier's (sizing.ts). Data in: the containers of the C-VEN DaemonSet and the
// Kubelink Deployment as the cluster view has them (pod template, not the running pods).
import type { IllumioSizing, SizingTier } from '../../protocol/illumio.js';
import { makeFinding, type FindingDraft } from '../detect/finding.js';
import { compareQuantities, parseQuantity, type Quantity } from './quantity.js';
import { tierResources } from './sizing.js';

export interface DeployedContainer {
  name: string;
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

export interface DeployedWorkload {
  /** Defaults: C-VEN DaemonSet illumio-system/illumio-ven, Kubelink Deployment illumio-system/illumio-kubelink. */
  kind?: string;
  namespace?: string;
  name?: string;
  containers: DeployedContainer[];
}

export interface DeployedIllumio {
  cven?: DeployedWorkload;
  kubelink?: DeployedWorkload;
  /** Storage (Kubelink's etcd in CLAS mode), when it runs as a workload of its own. */
  storage?: DeployedWorkload;
}

type Component = 'cven' | 'kubelink' | 'storage';
const COMPONENT_LABEL: Record<Component, string> = { cven: 'C-VEN', kubelink: 'Kubelink', storage: 'Storage' };
const DEFAULTS: Record<Component, { kind: string; namespace: string; name: string }> = {
  cven: { kind: 'DaemonSet', namespace: 'illumio-system', name: 'illumio-ven' },
  kubelink: { kind: 'Deployment', namespace: 'illumio-system', name: 'illumio-kubelink' },
  storage: { kind: 'StatefulSet', namespace: 'illumio-system', name: 'illumio-storage' },
};
const FIELDS = [
  ['requests', 'cpu'],
  ['requests', 'memory'],
  ['limits', 'cpu'],
  ['limits', 'memory'],
] as const;

export interface Shortfall {
  container: string;
  /** The tier row the container is held to. */
  component: Component;
  /** "requests.memory" */
  field: string;
  /** As deployed; "none" when the container sets neither a request nor a limit for it. */
  have: string;
  want: string;
}

/**
 * Which row of the guide a container is held to: the workload's component, except that in the
 * Kubelink Deployment a container named like storage or etcd is Storage (Kubelink's CLAS cache),
 * so that the storage sidecar, where there is one, is not held to Kubelink's numbers.
 */
function componentOf(workload: Component, container: string): Component {
  return workload === 'kubelink' && /storage|etcd/i.test(container) ? 'storage' : workload;
}

function read(text: string | undefined): Quantity | undefined {
  if (text === undefined) return undefined;
  try {
    return parseQuantity(text);
  } catch {
    return undefined;
  }
}

/**
 * One ILLUMIO_UNDERSIZED finding per deployed workload with at least one container field below the
 * tier's: requests.cpu, requests.memory, limits.cpu, limits.memory. A request that is not set
 * counts as the limit (Kubernetes defaults it so); neither set is "none", which is below. A limit
 * that is not set is no limit, never below. A quantity nodeprep cannot read is skipped (and
 * named in evidence), never guessed.
 */
export function detectUndersized(deployed: DeployedIllumio, sizing: IllumioSizing | SizingTier): FindingDraft[] {
  const tier = typeof sizing === 'string' ? sizing : sizing.tier;
  const decided = typeof sizing === 'string' ? undefined : sizing.reason;
  const resources = tierResources(tier);
  const findings: FindingDraft[] = [];
  for (const workloadComponent of ['cven', 'kubelink', 'storage'] as const) {
    const workload = deployed[workloadComponent];
    if (workload === undefined) continue;
    const { kind, namespace, name } = { ...DEFAULTS[workloadComponent], ...definedOnly(workload) };
    const shortfalls: Shortfall[] = [];
    const unreadable: { container: string; field: string; value: string }[] = [];
    for (const container of workload.containers) {
      const component = componentOf(workloadComponent, container.name);
      const want = resources[component];
      for (const [section, resource] of FIELDS) {
        const field = `${section}.${resource}`;
        const wanted = parseQuantity(want[section][resource]);
        const text = section === 'requests' ? (container.requests?.[resource] ?? container.limits?.[resource]) : container.limits?.[resource];
        if (text === undefined) {
          if (section === 'requests') shortfalls.push({ container: container.name, component, field, have: 'none', want: wanted.text });
          continue;
        }
        const have = read(text);
        if (have === undefined) {
          unreadable.push({ container: container.name, field, value: text });
          continue;
        }
        if (compareQuantities(have, wanted) < 0) shortfalls.push({ container: container.name, component, field, have: text, want: wanted.text });
      }
    }
    if (shortfalls.length === 0) continue;
    const label = COMPONENT_LABEL[workloadComponent];
    const values = `${workloadComponent}.resources${workloadComponent === 'kubelink' && shortfalls.some((s) => s.component === 'storage') ? ' and storage.resources' : ''}`;
    findings.push(
      makeFinding('ILLUMIO_UNDERSIZED', [workloadComponent, namespace, name], {
        nodes: [],
        message:
          `${label} ${kind} ${namespace}/${name} has resources below the ${tier} tier: ` +
          shortfalls.map((s) => `container ${s.container} ${s.field} ${s.have} < ${s.want}`).join(', '),
        remediation:
          `Set ${values} in illumio-values.yaml to the ${tier} tier's values (nodeprep's GET /v1/illumio/values.yaml has the block) and apply them with ` +
          '`helm upgrade illumio -f illumio-values.yaml oci://quay.io/illumio/illumio --version <the installed chart version> --namespace illumio-system`. ' +
          'Each resources block replaces the chart\'s default as a whole: give both requests and limits. ' +
          (workloadComponent === 'cven' ? 'The DaemonSet then restarts the C-VEN on every node, one after another. ' : '') +
          'Make sure the nodes have room for the new requests, or the pods stay Pending. ' +
          'nodeprep reads the pod template: a LimitRange default added at admission is not seen.',
        evidence: {
          component: workloadComponent,
          workload: `${kind} ${namespace}/${name}`,
          tier,
          ...(decided ? { sizing: decided } : {}),
          shortfalls,
          ...(unreadable.length > 0 ? { unreadable } : {}),
        },
      }),
    );
  }
  return findings;
}

function definedOnly(workload: DeployedWorkload): Partial<Record<'kind' | 'namespace' | 'name', string>> {
  const out: Partial<Record<'kind' | 'namespace' | 'name', string>> = {};
  if (workload.kind !== undefined) out.kind = workload.kind;
  if (workload.namespace !== undefined) out.namespace = workload.namespace;
  if (workload.name !== undefined) out.name = workload.name;
  return out;
}
