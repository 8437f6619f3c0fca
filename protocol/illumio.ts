// Shapes of the Illumio answers of the aggregator's HTTP API (design.md section 9, issue 10):
// GET /v1/illumio/sizing, GET /v1/readiness. GET /v1/illumio/values.yaml is text/yaml (a string).
// The aggregator's deciding code (aggregator/illumio/) returns exactly these types.
import { z } from 'zod';

export const SizingTier = z.enum(['small', 'medium', 'large']);
export type SizingTier = z.infer<typeof SizingTier>;

export const SizingInputName = z.enum(['nodes', 'workloads', 'policyBytes']);
export type SizingInputName = z.infer<typeof SizingInputName>;

export const SizingInput = z.object({
  name: SizingInputName,
  known: z.boolean(),
  // nodes, workloads: a count; policyBytes: bytes. Absent when unknown.
  value: z.number().nonnegative().optional(),
  // As the admin reads it: "8", "1Gi".
  display: z.string().optional(),
  // Where the value comes from, e.g. "Node objects in the API", "configured".
  source: z.string().optional(),
  // The tier this input alone picks; absent when unknown.
  tier: SizingTier.optional(),
  // Above the large tier's published range (workloads > 8000, policy size > 1.5 Gi).
  beyondGuidance: z.boolean(),
});
export type SizingInput = z.infer<typeof SizingInput>;

// Quantities as the guide writes them: cpu "0.5", "2"; memory "600Mi", "3Gi".
export const ResourceAmounts = z.object({ cpu: z.string(), memory: z.string() });
export const ComponentResources = z.object({ requests: ResourceAmounts, limits: ResourceAmounts });
export type ComponentResources = z.infer<typeof ComponentResources>;
export const StorageResources = ComponentResources.extend({
  // The storage volume, "1Gi", and the same as Illumio's chart key storage.sizeGi wants it.
  volume: z.string(),
  sizeGi: z.number().int().positive(),
});
export type StorageResources = z.infer<typeof StorageResources>;

export const IllumioSizing = z.object({
  tier: SizingTier,
  // The inputs whose own tier is the answer's (several when they agree); empty when none is known.
  decidedBy: z.array(SizingInputName),
  inputs: z.object({ nodes: SizingInput, workloads: SizingInput, policyBytes: SizingInput }),
  unknownInputs: z.array(SizingInputName),
  // Some input is unknown and the tier is below large: the tier may be higher.
  mayBeHigher: z.boolean(),
  // Some input is above the large tier's range: large is the minimum, the guide has no answer.
  beyondGuidance: z.boolean(),
  // One sentence: the tier, what decided it, what is unknown, whether beyond the guidance.
  reason: z.string(),
  resources: z.object({ cven: ComponentResources, kubelink: ComponentResources, storage: StorageResources }),
});
export type IllumioSizing = z.infer<typeof IllumioSizing>;

export const ReadinessState = z.enum(['ready', 'not-ready', 'unknown']);
export type ReadinessState = z.infer<typeof ReadinessState>;

// The guide's four steps, in its order.
export const ReadinessStepName = z.enum(['machine-ids', 'root-ca', 'sizing', 'calico-append']);
export type ReadinessStepName = z.infer<typeof ReadinessStepName>;

export const ReadinessStep = z.object({
  step: ReadinessStepName,
  title: z.string(),
  state: ReadinessState,
  // One line for the admin.
  reason: z.string(),
  // The ids of the active findings that decide the state: the blocking ones when not-ready, the
  // ones that leave it open when unknown, the ones that qualify it (info, expiring) when ready.
  findings: z.array(z.string()),
});
export type ReadinessStep = z.infer<typeof ReadinessStep>;

export const Readiness = z.object({
  // Every step is ready and every node of the cluster reports.
  ready: z.boolean(),
  reason: z.string(),
  steps: z.array(ReadinessStep).length(4),
  nodes: z.object({
    reporting: z.number().int().nonnegative(),
    // Node objects in the API; absent when the cluster view is off.
    inCluster: z.number().int().nonnegative().optional(),
  }),
  // Active findings outside the four steps that still stop an installation (a server VEN).
  otherBlockers: z.array(z.string()),
  // The sizing tier the answer assumes, when known.
  tier: SizingTier.optional(),
});
export type Readiness = z.infer<typeof Readiness>;
