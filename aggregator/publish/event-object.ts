// The Events of a transition (design.md section 10), as core/v1 Events: the API that
// `kubectl describe node X` and `kubectl events --for node/X` read (k8s.io/kubectl
// pkg/describe/describe.go searchEvents, pkg/cmd/events/events.go), and the one client-go's
// recorder writes (count, firstTimestamp, lastTimestamp, source). events.k8s.io/v1 Events are
// the same objects in another version; the core version keeps the recorder's series fields.
// Pure: a transition in, the Events to write out.
import { createHash } from 'node:crypto';
import { FINDING_NODES, type FindingCode } from '../../protocol/findings.js';
import type { Transition } from '../findings/book.js';
import { homeNodeName } from './home-cluster.js';

export const EVENT_COMPONENT = 'nodeprep-aggregator';

// An Event's message, like an apiserver-validated events.k8s.io note, at most 1 KiB.
const MAX_MESSAGE = 1024;
const MAX_NAME = 253;

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
}

export interface EventDraft {
  namespace: string;
  name: string;
  involvedObject: InvolvedObject;
  // The object that decides a finding about no node (the root CA ConfigMap, an undersized
  // workload), named beside the Deployment the Event regards.
  related?: InvolvedObject;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface EventContext {
  // The aggregator's own cluster name ('' when its agents name none): only its Nodes have objects here.
  homeCluster: string;
  // Whether a Node of this name is in the cluster view (a deleted Node gets no Event).
  nodeExists: (name: string) => boolean;
  // Where findings about no node go: the aggregator's Deployment, when known.
  deployment?: InvolvedObject;
}

/** MACHINE_ID_DUPLICATE → MachineIdDuplicate: the Kubernetes convention for reasons (UpperCamelCase). */
export function eventReason(code: FindingCode, kind: Transition['kind']): string {
  const camel = code
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
  return kind === 'resolved' ? `${camel}Resolved` : camel;
}

/**
 * A fixed name per object, reason and finding, so that the same Event raised again (after a
 * resolve, or by a restarted aggregator) continues its series instead of adding an object.
 * client-go names Events "<object>.<nanoseconds>" and loses the series with its cache.
 */
export function eventName(object: InvolvedObject, reason: string, findingId: string): string {
  const hash = createHash('sha256').update(`${object.namespace ?? ''}/${object.kind}/${object.name}/${reason}/${findingId}`).digest('hex').slice(0, 16);
  return `${object.name.slice(0, MAX_NAME - hash.length - 1)}.${hash}`;
}

const clip = (text: string) => (text.length <= MAX_MESSAGE ? text : `${text.slice(0, MAX_MESSAGE - 1)}…`);

// The kinds an undersized workload's evidence names ("DaemonSet illumio-system/illumio-ven").
const WORKLOAD_API: Record<string, string> = { DaemonSet: 'apps/v1', Deployment: 'apps/v1', StatefulSet: 'apps/v1' };

/**
 * The object that decides a finding about no node, from its evidence: the root CA ConfigMap
 * (evidence.configMap, "<namespace>/<name>") or the workload found undersized (evidence.workload,
 * "<Kind> <namespace>/<name>"). The Event regards the aggregator's Deployment and names this one
 * as related: an Event must live in its regarding object's namespace, and writing Events into
 * Illumio's namespace would need a Role there (least privilege: only ours and default).
 */
export function decidingObject(evidence: Record<string, unknown>): InvolvedObject | undefined {
  const ref = (text: unknown) => (typeof text === 'string' ? /^([a-z0-9.-]+)\/([a-z0-9.-]+)$/.exec(text) : null);
  const configMap = ref(evidence.configMap);
  if (configMap) return { apiVersion: 'v1', kind: 'ConfigMap', namespace: configMap[1]!, name: configMap[2]! };
  const workload = typeof evidence.workload === 'string' ? /^(\w+) (\S+)$/.exec(evidence.workload) : null;
  const where = workload && ref(workload[2]);
  if (workload && where && WORKLOAD_API[workload[1]!]) return { apiVersion: WORKLOAD_API[workload[1]!]!, kind: workload[1]!, namespace: where[1]!, name: where[2]! };
  return undefined;
}

/** The Events of one transition: one per Node it concerns (at most the finding's 100), or one on the aggregator's Deployment. */
export function eventsOf(transition: Transition, context: EventContext): EventDraft[] {
  const { kind, finding, reason } = transition;
  const eventReasonText = eventReason(finding.code, kind);
  const type = kind === 'raised' && finding.severity !== 'info' ? 'Warning' : 'Normal';
  const message = clip(kind === 'raised' ? finding.message : `Resolved${reason ? ` (${reason})` : ''}: ${finding.message}`);
  const objects: { namespace: string; involvedObject: InvolvedObject; related?: InvolvedObject }[] = [];
  if (finding.nodes.length === 0) {
    const related = decidingObject(finding.evidence);
    if (context.deployment) objects.push({ namespace: context.deployment.namespace!, involvedObject: context.deployment, ...(related ? { related } : {}) });
  } else {
    // The detectors list at most FINDING_NODES; the bound is kept here too, whatever they list.
    for (const key of finding.nodes.slice(0, FINDING_NODES)) {
      const name = homeNodeName(context.homeCluster, key);
      if (name === undefined || !context.nodeExists(name)) continue;
      // Nodes are cluster-scoped: their Events go to "default", as the kubelet's do, and carry
      // the node's name as uid, as the kubelet's do (kubectl describe node looks for both).
      objects.push({ namespace: 'default', involvedObject: { apiVersion: 'v1', kind: 'Node', name, uid: name } });
    }
  }
  return objects.map(({ namespace, involvedObject, related }) => ({
    namespace,
    name: eventName(involvedObject, eventReasonText, finding.id),
    involvedObject,
    ...(related ? { related } : {}),
    type,
    reason: eventReasonText,
    message,
  }));
}

/** The key the per-object rate limit counts by (client-go's getSpamKey, without the type). */
export function objectKey(object: InvolvedObject): string {
  return `${object.apiVersion}/${object.kind}/${object.namespace ?? ''}/${object.name}`;
}

/** The Event to create: the first of its series. */
export function newEvent(draft: EventDraft, at: string, instance: string): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: draft.name, namespace: draft.namespace },
    involvedObject: draft.involvedObject,
    ...(draft.related ? { related: draft.related } : {}),
    type: draft.type,
    reason: draft.reason,
    message: draft.message,
    source: { component: EVENT_COMPONENT },
    reportingComponent: EVENT_COMPONENT,
    reportingInstance: instance.slice(0, 128),
    firstTimestamp: at,
    lastTimestamp: at,
    count: 1,
  };
}
