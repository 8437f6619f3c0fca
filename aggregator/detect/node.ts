// Everything one report says about its own node. Pure: a report in, findings out; the store
// adds the cluster-wide findings (duplicates, mixed modes, staleness) from its indexes.
import type { NodeReport } from '../../protocol/report.js';
import { detectCollectionErrors } from './agent-errors.js';
import { detectIncompleteTables, detectMixedBackends } from './backends.js';
import { analyzeCalico, SET_APPEND_MODE, type ChainHead } from './calico.js';
import type { ConfiguredMode } from './calico-config.js';
import { makeFinding, nodeKey, type FindingDraft } from './finding.js';
import { detectServerVen, illumioPresence, type ChainMatcher } from './illumio.js';
import { detectKubeletMachineIdStale, detectMachineIdProblems, validMachineId } from './machine-id.js';

export interface NodeAnalysis {
  findings: FindingDraft[];
  machineId: string | undefined;
  calicoMode: 'insert' | 'append' | undefined;
  // The rules could not tell the mode (Calico's are the only ones) and the configuration did.
  calicoModeFromConfig: boolean;
  // Illumio shows on the node itself (host marker or chains).
  illumioPresent: boolean;
  // The head of every chain Calico hooks and whose it is taken to be: where Illumio is first and
  // Calico appended no finding is raised, and this is the record of it.
  chainHeads: ChainHead[];
}

export interface DetectOptions {
  isIllumioChain: ChainMatcher;
}

/** What the cluster view knows about the node, when it is on (engine.ts fills it). */
export interface NodeContext {
  // The kubelet's copy of the machine ID, application-specific form.
  kubeletAppId?: string;
  // A C-VEN pod runs on the node.
  illumioFromApi?: boolean;
  // The mode Calico's configuration sets for the node, and the one place that decides it.
  configuredCalico?: ConfiguredMode;
}

const CALICO_CODES = new Set(['CALICO_INSERT_MODE', 'CALICO_ILLUMIO_CONFLICT']);

export function analyzeNode(report: NodeReport, options: DetectOptions, context: NodeContext = {}): NodeAnalysis {
  const illumio = illumioPresence(report, options.isIllumioChain, context.illumioFromApi);
  const calico = analyzeCalico(report, illumio, options.isIllumioChain);
  const configured = context.configuredCalico;
  let calicoMode = calico.mode;
  const calicoFindings = [...calico.findings];
  // Where Calico's rules are the only ones in every chain it hooks, Insert and Append look the
  // same; the configuration says which it is, and so what happens once C-VEN adds its rules.
  const soleOnly = calico.mode === undefined && calico.chains.some((c) => c.mode === 'sole') && calico.chains.every((c) => c.mode === 'sole' || c.mode === 'unhooked');
  const calicoModeFromConfig = soleOnly && configured?.mode !== undefined;
  if (calicoModeFromConfig) {
    calicoMode = configured!.mode;
    if (calicoMode === 'insert') calicoFindings.push(soleInsertFinding(report, configured!));
  }
  // With the cluster view on, a Calico finding names the one place that decides the mode.
  if (configured) {
    for (const f of calicoFindings) {
      if (CALICO_CODES.has(f.code)) f.remediation = f.remediation.replace(SET_APPEND_MODE, `Set Append mode where it is decided for this node, ${configured.where}: ${configured.fix}.`);
    }
  }
  return {
    findings: [
      ...detectMachineIdProblems(report),
      ...detectKubeletMachineIdStale(report, context.kubeletAppId),
      ...calicoFindings,
      ...detectMixedBackends(report),
      ...detectIncompleteTables(report),
      ...detectCollectionErrors(report),
      ...detectServerVen(report),
    ],
    machineId: validMachineId(report),
    calicoMode,
    calicoModeFromConfig,
    illumioPresent: illumio.hostDataDir || illumio.chains.length > 0,
    chainHeads: calico.heads,
  };
}

function soleInsertFinding(report: NodeReport, configured: ConfiguredMode): FindingDraft {
  const node = nodeKey(report);
  return makeFinding('CALICO_INSERT_MODE', [node], {
    nodes: [node],
    message: `Calico's rules are the only ones in the chains it hooks on ${node}, and its configuration (${configured.where}) puts them in Insert mode: C-VEN's rules would go below them`,
    remediation: `Set Append mode where it is decided: ${configured.fix}. Do this before installing the C-VEN.`,
    evidence: { modeFrom: 'configuration', place: configured.place, where: configured.where },
  });
}
