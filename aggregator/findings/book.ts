// The active findings, kept by scope, and the transitions between them (design.md section 2:
// alerts are transitions). A scope is one source's say about one subject: a node's report
// ("report:<node>"), a duplicate machine ID ("machine-id:<id>"), the cluster view's inventory
// ("inventory"), ... Each source replaces its scope's findings whole; the book works out what
// was raised and what was resolved, keeps each finding's `since`, and emits one transition for
// each. A finding that stays, reworded (its node count grew, say), is updated without a
// transition. Pure: no I/O, no timers; the clock comes with each call.
import type { Finding, Severity } from '../../protocol/findings.js';
import type { FindingDraft } from '../detect/finding.js';

export interface Transition {
  kind: 'raised' | 'resolved';
  finding: Finding;
  // How many nodes the finding concerns; `finding.nodes` may be a sample of them.
  nodeCount: number;
  reason?: string;
}

export const severityRank: Record<Severity, number> = { critical: 0, warning: 1, info: 2 };

export const byImportance = (a: Finding, b: Finding) =>
  severityRank[a.severity] - severityRank[b.severity] || (a.code < b.code ? -1 : a.code > b.code ? 1 : 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** How many nodes the finding concerns: evidence.nodeCount where a finding lists a sample. */
export function nodeCountOf(finding: Pick<Finding, 'nodes' | 'evidence'>): number {
  const count = finding.evidence.nodeCount;
  return typeof count === 'number' ? count : finding.nodes.length;
}

export class FindingBook {
  private readonly scopes = new Map<string, Map<string, Finding>>();
  private readonly active = new Map<string, Finding>();
  private sorted: Finding[] | undefined;

  constructor(private readonly emit: (transition: Transition) => void) {}

  get size(): number {
    return this.active.size;
  }

  /**
   * Replaces the findings of `scope` with `drafts`. New ids are raised (since `now`), missing
   * ones resolved (with `reason`), kept ones keep their `since`. A kept finding whose severity
   * changed is resolved and raised again, so that an alert pipeline sees the new severity.
   * Returns the scope's findings.
   */
  set(scope: string, drafts: readonly FindingDraft[], now: number, reason?: string): Finding[] {
    const before = this.scopes.get(scope);
    if (drafts.length === 0 && before === undefined) return [];
    const next = new Map<string, Finding>();
    const since = new Date(now).toISOString();
    for (const draft of drafts) {
      if (next.has(draft.id)) continue;
      const old = before?.get(draft.id);
      const kept = old !== undefined && old.severity === draft.severity;
      next.set(draft.id, { ...draft, since: kept ? old.since : since });
    }
    if (before) {
      for (const [id, old] of before) {
        if (next.has(id)) continue;
        this.active.delete(id);
        this.sorted = undefined;
        this.emit({ kind: 'resolved', finding: old, nodeCount: nodeCountOf(old), ...(reason ? { reason } : {}) });
      }
    }
    for (const [id, finding] of next) {
      const old = before?.get(id);
      this.active.set(id, finding);
      this.sorted = undefined;
      if (old && old.severity !== finding.severity) this.emit({ kind: 'resolved', finding: old, nodeCount: nodeCountOf(old), reason: `now ${finding.severity}` });
      if (!old || old.severity !== finding.severity) this.emit({ kind: 'raised', finding, nodeCount: nodeCountOf(finding) });
    }
    if (next.size === 0) this.scopes.delete(scope);
    else this.scopes.set(scope, next);
    return [...next.values()];
  }

  /** Resolves every finding of the scope. */
  clear(scope: string, now: number, reason?: string): void {
    this.set(scope, [], now, reason);
  }

  /** The findings of one scope (empty when it has none). */
  scope(scope: string): Finding[] {
    const found = this.scopes.get(scope);
    return found ? [...found.values()] : [];
  }

  get(id: string): Finding | undefined {
    return this.active.get(id);
  }

  /** Every active finding, most severe first, then by code and id; the array is shared: do not change it. */
  all(): readonly Finding[] {
    this.sorted ??= [...this.active.values()].sort(byImportance);
    return this.sorted;
  }

  /** Active findings per code and severity, for the metrics. */
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const f of this.active.values()) {
      const key = `${f.code}\0${f.severity}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return counts;
  }
}
