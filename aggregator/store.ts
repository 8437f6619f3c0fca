// The aggregator's soft state (design.md section 2): the latest report per node, replaced not
// merged, and the indexes that make one report O(1) work whatever the cluster size. No I/O and
// no timers here: the clock is injected and transitions go to a callback, so tests drive it.
import { createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync, constants as zlibConstants } from 'node:zlib';
import type { NodeDetail, NodeSummary, FindingQuery } from '../protocol/api.js';
import type { Finding } from '../protocol/findings.js';
import type { NodeReport } from '../protocol/report.js';
import { calicoModeMixedFinding, nodeStaleFinding } from './detect/cluster.js';
import { nodeKey, type FindingDraft } from './detect/finding.js';
import { duplicateMachineIdFinding } from './detect/machine-id.js';
import { analyzeNode, type DetectOptions } from './detect/node.js';

export type CalicoMode = 'insert' | 'append';

export interface Transition {
  kind: 'raised' | 'resolved';
  finding: Finding;
  // How many nodes the finding concerns; `finding.nodes` may be a sample of them.
  nodeCount: number;
  reason?: 'node dropped';
}

export interface StoreOptions {
  ttlSeconds: number;
  dropAfterSeconds: number;
  detect: DetectOptions;
  onTransition: (transition: Transition) => void;
  now?: () => number;
}

interface NodeEntry {
  name: string;
  cluster: string; // '' when the agent did not say
  lastSeen: number; // ms since the epoch
  stale: boolean;
  // The report as received, deflated against the first report this process accepted (see
  // compress): 100,000 parsed reports would not fit in 512 MiB, this takes a few hundred bytes a
  // node, and only GET /v1/nodes/:name reads it back.
  report: Buffer;
  // What the report says, collectedAt aside: an agent's heartbeat repeats the facts, and a
  // repeated report needs no analysis, no compression and no diff (see ingest).
  fingerprint: string;
  collectedAt: string;
  machineId: string | undefined;
  calicoMode: CalicoMode | undefined;
  findings: Map<string, Finding>; // this node's own findings, NODE_STALE included
}

interface ModeSets {
  insert: Set<string>;
  append: Set<string>;
}

/**
 * A digest of the report as received, without its collectedAt value. Equal digests mean equal
 * facts; unequal ones (another key order, say) only cost the full path.
 */
export function reportFingerprint(rawJson: string, collectedAt: string): string {
  const hash = createHash('sha1');
  const field = `"collectedAt":"${collectedAt}"`;
  const at = rawJson.indexOf(field);
  if (at < 0) hash.update(rawJson);
  else hash.update(rawJson.slice(0, at)).update(rawJson.slice(at + field.length));
  return hash.digest('base64');
}

/** How many node names a logged or POST-returned cluster-wide finding carries. */
export const SAMPLE_NODES = 20;

const severityRank = { critical: 0, warning: 1, info: 2 } as const;
const byImportance = (a: Finding, b: Finding) =>
  severityRank[a.severity] - severityRank[b.severity] || a.code.localeCompare(b.code) || a.id.localeCompare(b.id);

function firstN(names: Iterable<string>, limit: number): string[] {
  const out: string[] = [];
  if (limit <= 0) return out;
  for (const name of names) {
    out.push(name);
    if (out.length >= limit) break;
  }
  return out;
}

export class NodeStore {
  readonly ttlSeconds: number;
  readonly dropAfterSeconds: number;
  private readonly ttlMs: number;
  private readonly dropAfterMs: number;
  private readonly detect: DetectOptions;
  private readonly emit: (transition: Transition) => void;
  private readonly now: () => number;

  // Insertion order is last-seen order (an entry is re-inserted on every report), so the sweep
  // only looks at the oldest entries and stops at the first fresh one.
  private readonly nodes = new Map<string, NodeEntry>();
  private readonly nodeFindings = new Map<string, Finding>(); // every node's own findings, by id
  private readonly byMachineId = new Map<string, Set<string>>(); // live nodes only
  private readonly modesByCluster = new Map<string, ModeSets>(); // live nodes only
  private readonly duplicateSince = new Map<string, string>(); // machine ID -> since
  private readonly mixedSince = new Map<string, string>(); // cluster -> since
  private staleNodes = 0;
  // Reports from one cluster's nodes are alike, so the first one is a preset dictionary that
  // shrinks the others about fivefold (zlib's `dictionary` option). It never changes.
  private dictionary: Buffer | undefined;

  constructor(options: StoreOptions) {
    this.ttlSeconds = options.ttlSeconds;
    this.dropAfterSeconds = options.dropAfterSeconds;
    this.ttlMs = options.ttlSeconds * 1000;
    this.dropAfterMs = options.dropAfterSeconds * 1000;
    this.detect = options.detect;
    this.emit = options.onTransition;
    this.now = options.now ?? Date.now;
  }

  get knownNodes(): number {
    return this.nodes.size;
  }

  get staleNodeCount(): number {
    return this.staleNodes;
  }

  /** Replaces the node's state with this report; returns the findings that concern the node. */
  ingest(report: NodeReport, rawJson: string): Finding[] {
    const now = this.now();
    const since = new Date(now).toISOString();
    const name = nodeKey(report);
    const cluster = report.node.cluster ?? '';
    const fingerprint = reportFingerprint(rawJson, report.collectedAt);

    let entry = this.nodes.get(name);
    if (entry && !entry.stale && entry.fingerprint === fingerprint) {
      // The same facts again (a heartbeat): only the node's freshness changes.
      this.nodes.delete(name);
      entry.lastSeen = now;
      entry.collectedAt = report.collectedAt;
      this.nodes.set(name, entry);
      return this.findingsOfNode(entry, SAMPLE_NODES);
    }
    const analysis = analyzeNode(report, this.detect);
    const previous = entry && !entry.stale ? { machineId: entry.machineId, cluster: entry.cluster, mode: entry.calicoMode } : undefined;
    if (entry) {
      this.nodes.delete(name);
      if (entry.stale) this.staleNodes--;
    } else {
      entry = { name, cluster, lastSeen: now, stale: false, report: Buffer.alloc(0), fingerprint: '', collectedAt: '', machineId: undefined, calicoMode: undefined, findings: new Map() };
    }
    entry.cluster = cluster;
    entry.lastSeen = now;
    entry.stale = false;
    entry.report = this.compress(rawJson);
    entry.fingerprint = fingerprint;
    entry.collectedAt = report.collectedAt;
    entry.machineId = analysis.machineId;
    entry.calicoMode = analysis.calicoMode;
    this.nodes.set(name, entry);

    this.moveMachineId(name, previous?.machineId, entry.machineId, since);
    this.moveMode(name, previous?.cluster, previous?.mode, cluster, entry.calicoMode, since);
    this.replaceNodeFindings(entry, analysis.findings, since);
    return this.findingsOfNode(entry, SAMPLE_NODES);
  }

  /** Marks nodes silent past the TTL as stale and forgets those silent past the drop time. */
  sweep(): void {
    const now = this.now();
    for (const entry of this.nodes.values()) {
      const silentMs = now - entry.lastSeen;
      if (silentMs <= this.ttlMs) break;
      if (silentMs > this.dropAfterMs) this.drop(entry, now);
      else if (!entry.stale) this.markStale(entry, now);
    }
  }

  listNodes(): NodeSummary[] {
    const out: NodeSummary[] = [];
    for (const entry of this.nodes.values()) out.push(this.summary(entry));
    return out;
  }

  getNode(name: string): NodeDetail | undefined {
    const entry = this.nodes.get(name);
    if (!entry) return undefined;
    const report = JSON.parse(inflateRawSync(entry.report, { dictionary: this.dictionary }).toString('utf8')) as NodeReport;
    report.collectedAt = entry.collectedAt; // the latest heartbeat's, which may repeat older facts
    return { ...this.summary(entry), report, activeFindings: this.findingsOfNode(entry, Infinity) };
  }

  listFindings(query: FindingQuery = {}): Finding[] {
    const wanted = (f: { code: string; severity: string }) =>
      (query.code === undefined || f.code === query.code) && (query.severity === undefined || f.severity === query.severity);
    let findings: Finding[];
    if (query.node !== undefined) {
      const entry = this.nodes.get(query.node);
      findings = entry ? this.findingsOfNode(entry, Infinity) : [];
    } else {
      findings = [];
      for (const f of this.nodeFindings.values()) if (wanted(f)) findings.push(f);
      if (wanted({ code: 'MACHINE_ID_DUPLICATE', severity: 'critical' })) {
        for (const machineId of this.duplicateSince.keys()) findings.push(this.duplicateFinding(machineId, Infinity));
      }
      if (wanted({ code: 'CALICO_MODE_MIXED', severity: 'warning' })) {
        for (const cluster of this.mixedSince.keys()) findings.push(this.mixedFinding(cluster, Infinity));
      }
    }
    return findings.filter(wanted).sort(byImportance);
  }

  private compress(rawJson: string): Buffer {
    this.dictionary ??= Buffer.from(rawJson);
    const deflated = deflateRawSync(rawJson, { level: zlibConstants.Z_BEST_SPEED, dictionary: this.dictionary });
    // zlib returns a view of its 16 KiB output chunk; keeping it would keep the whole chunk.
    return Buffer.from(deflated);
  }

  // ---- cluster-wide findings, kept as "active since" and worded on demand ----

  private duplicateFinding(machineId: string, limit: number): Finding {
    const nodes = this.byMachineId.get(machineId) ?? new Set<string>();
    const draft = duplicateMachineIdFinding(machineId, firstN(nodes, limit), nodes.size);
    return { ...draft, since: this.duplicateSince.get(machineId) ?? new Date(this.now()).toISOString() };
  }

  private mixedFinding(cluster: string, limit: number): Finding {
    const sets = this.modesByCluster.get(cluster) ?? { insert: new Set<string>(), append: new Set<string>() };
    const minority: CalicoMode = sets.insert.size <= sets.append.size ? 'insert' : 'append';
    const counts = { insert: sets.insert.size, append: sets.append.size };
    const draft = calicoModeMixedFinding(cluster, counts, minority, firstN(sets[minority], limit));
    return { ...draft, since: this.mixedSince.get(cluster) ?? new Date(this.now()).toISOString() };
  }

  private moveMachineId(name: string, from: string | undefined, to: string | undefined, since: string): void {
    if (from === to) return;
    if (from !== undefined) {
      const group = this.byMachineId.get(from);
      if (group) {
        if (group.size === 2 && group.has(name)) {
          // Resolved: word it while the departing node is still listed.
          const finding = this.duplicateFinding(from, SAMPLE_NODES);
          this.duplicateSince.delete(from);
          this.emit({ kind: 'resolved', finding, nodeCount: 2 });
        }
        group.delete(name);
        if (group.size === 0) this.byMachineId.delete(from);
      }
    }
    if (to !== undefined) {
      let group = this.byMachineId.get(to);
      if (!group) this.byMachineId.set(to, (group = new Set()));
      group.add(name);
      if (group.size === 2) {
        this.duplicateSince.set(to, since);
        this.emit({ kind: 'raised', finding: this.duplicateFinding(to, SAMPLE_NODES), nodeCount: 2 });
      }
    }
  }

  private isMixed(cluster: string): boolean {
    const sets = this.modesByCluster.get(cluster);
    return sets !== undefined && sets.insert.size > 0 && sets.append.size > 0;
  }

  private moveMode(
    name: string,
    fromCluster: string | undefined,
    from: CalicoMode | undefined,
    toCluster: string,
    to: CalicoMode | undefined,
    since: string,
  ): void {
    if (fromCluster === toCluster && from === to) return;
    const clusters = new Set([toCluster, ...(fromCluster === undefined ? [] : [fromCluster])]);
    const before = new Map([...clusters].map((c) => [c, this.isMixed(c)]));
    const resolvedWording = new Map<string, Finding>();
    for (const c of clusters) if (before.get(c)) resolvedWording.set(c, this.mixedFinding(c, SAMPLE_NODES));
    if (fromCluster !== undefined && from !== undefined) this.modesByCluster.get(fromCluster)?.[from].delete(name);
    if (to !== undefined) {
      let sets = this.modesByCluster.get(toCluster);
      if (!sets) this.modesByCluster.set(toCluster, (sets = { insert: new Set(), append: new Set() }));
      sets[to].add(name);
    }
    for (const c of clusters) {
      const after = this.isMixed(c);
      if (before.get(c) && !after) {
        this.mixedSince.delete(c);
        const finding = resolvedWording.get(c)!;
        this.emit({ kind: 'resolved', finding, nodeCount: finding.evidence.nodeCount as number });
      } else if (!before.get(c) && after) {
        this.mixedSince.set(c, since);
        const finding = this.mixedFinding(c, SAMPLE_NODES);
        this.emit({ kind: 'raised', finding, nodeCount: finding.evidence.nodeCount as number });
      }
      const sets = this.modesByCluster.get(c);
      if (sets && sets.insert.size === 0 && sets.append.size === 0) this.modesByCluster.delete(c);
    }
  }

  // ---- a node's own findings ----

  private replaceNodeFindings(entry: NodeEntry, drafts: FindingDraft[], since: string): void {
    const next = new Map<string, Finding>();
    for (const draft of drafts) {
      if (next.has(draft.id)) continue;
      const old = entry.findings.get(draft.id);
      next.set(draft.id, { ...draft, since: old?.since ?? since });
    }
    for (const [id, old] of entry.findings) {
      if (!next.has(id)) {
        this.nodeFindings.delete(id);
        this.emit({ kind: 'resolved', finding: old, nodeCount: old.nodes.length });
      }
    }
    for (const [id, finding] of next) {
      this.nodeFindings.set(id, finding);
      if (!entry.findings.has(id)) this.emit({ kind: 'raised', finding, nodeCount: finding.nodes.length });
    }
    entry.findings = next;
  }

  private markStale(entry: NodeEntry, now: number): void {
    entry.stale = true;
    this.staleNodes++;
    const since = new Date(now).toISOString();
    // "Live" nodes only: a node that went away no longer duplicates anyone's ID or votes on modes.
    this.moveMachineId(entry.name, entry.machineId, undefined, since);
    this.moveMode(entry.name, entry.cluster, entry.calicoMode, entry.cluster, undefined, since);
    const draft = nodeStaleFinding(entry.name, new Date(entry.lastSeen).toISOString(), this.ttlSeconds, this.dropAfterSeconds);
    const finding = { ...draft, since };
    entry.findings.set(finding.id, finding);
    this.nodeFindings.set(finding.id, finding);
    this.emit({ kind: 'raised', finding, nodeCount: 1 });
  }

  private drop(entry: NodeEntry, now: number): void {
    const since = new Date(now).toISOString();
    if (entry.stale) this.staleNodes--;
    else {
      this.moveMachineId(entry.name, entry.machineId, undefined, since);
      this.moveMode(entry.name, entry.cluster, entry.calicoMode, entry.cluster, undefined, since);
    }
    for (const [id, finding] of entry.findings) {
      this.nodeFindings.delete(id);
      this.emit({ kind: 'resolved', finding, nodeCount: finding.nodes.length, reason: 'node dropped' });
    }
    this.nodes.delete(entry.name);
  }

  private votesInMixedCluster(entry: NodeEntry): boolean {
    return !entry.stale && entry.calicoMode !== undefined && this.mixedSince.has(entry.cluster);
  }

  private isDuplicate(entry: NodeEntry): boolean {
    return !entry.stale && entry.machineId !== undefined && this.duplicateSince.has(entry.machineId);
  }

  private findingsOfNode(entry: NodeEntry, limit: number): Finding[] {
    const out = [...entry.findings.values()];
    if (this.isDuplicate(entry)) out.push(this.duplicateFinding(entry.machineId!, limit));
    // Every node that votes in a mixed cluster is concerned, not only the listed minority.
    if (this.votesInMixedCluster(entry)) out.push(this.mixedFinding(entry.cluster, limit));
    return out.sort(byImportance);
  }

  private summary(entry: NodeEntry): NodeSummary {
    return {
      name: entry.name,
      ...(entry.cluster === '' ? {} : { cluster: entry.cluster }),
      lastSeen: new Date(entry.lastSeen).toISOString(),
      stale: entry.stale,
      ...(entry.machineId === undefined ? {} : { machineId: entry.machineId }),
      ...(entry.calicoMode === undefined ? {} : { calicoMode: entry.calicoMode }),
      findings: entry.findings.size + (this.isDuplicate(entry) ? 1 : 0) + (this.votesInMixedCluster(entry) ? 1 : 0),
    };
  }
}
