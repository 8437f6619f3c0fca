// Everything one report says about its own node. Pure: a report in, findings out; the store
// adds the cluster-wide findings (duplicates, mixed modes, staleness) from its indexes.
import type { NodeReport } from '../../protocol/report.js';
import { detectCollectionErrors } from './agent-errors.js';
import { detectIncompleteTables, detectMixedBackends } from './backends.js';
import { analyzeCalico } from './calico.js';
import type { FindingDraft } from './finding.js';
import { detectServerVen, illumioPresence, type ChainMatcher } from './illumio.js';
import { detectMachineIdProblems, validMachineId } from './machine-id.js';

export interface NodeAnalysis {
  findings: FindingDraft[];
  machineId: string | undefined;
  calicoMode: 'insert' | 'append' | undefined;
}

export interface DetectOptions {
  isIllumioChain: ChainMatcher;
}

export function analyzeNode(report: NodeReport, options: DetectOptions): NodeAnalysis {
  const illumio = illumioPresence(report, options.isIllumioChain);
  const calico = analyzeCalico(report, illumio, options.isIllumioChain);
  return {
    findings: [
      ...detectMachineIdProblems(report),
      ...calico.findings,
      ...detectMixedBackends(report),
      ...detectIncompleteTables(report),
      ...detectCollectionErrors(report),
      ...detectServerVen(report),
    ],
    machineId: validMachineId(report),
    calicoMode: calico.mode,
  };
}
