// The aggregator's state and its decisions, tied together: the latest report per node
// (reports/store.ts), what each report says about its node (detect/node.ts), what the nodes say
// together (duplicate machine IDs, mixed modes), what the cluster view adds (nodes without an
// agent, Calico's configuration), and the active findings with their transitions
// (findings/book.ts). Reports cost O(1) whatever the cluster size; the cluster view's findings
// are worked out again when the view changes and on the sweep. No I/O and no timers: the clock
// is injected and the caller drives sweep(), so tests run it step by step.
import { FINDING_NODES, type Finding, type FindingCode } from '../protocol/findings.js';
import type { FindingQuery, NodeCounts, NodeDetail, NodeQuery, NodeSummary } from '../protocol/api.js';
import type { NodeReport } from '../protocol/report.js';
import type { ClusterFacts } from './cluster/facts.js';
import { detectCalicoDrift, detectCalicoConfigNotAppend, configuredCalicoMode } from './detect/calico-config.js';
import { calicoModeMixedFinding, nodeStaleFinding } from './detect/cluster.js';
import { findingId, nodeKey, type FindingDraft } from './detect/finding.js';
import { detectNodesWithoutAgent, detectSystemUuidDuplicates } from './detect/inventory.js';
import { duplicateMachineIdFinding } from './detect/machine-id.js';
import { analyzeNode, type DetectOptions, type NodeContext } from './detect/node.js';
import { CalicoModeVotes, type CalicoMode } from './findings/calico-mode-votes.js';
import { FindingBook, byImportance, severityRank, type Transition } from './findings/book.js';
import { MachineIdGroups, type MachineIdSource } from './findings/machine-id-groups.js';
import { ReportStore, type ReportEntry } from './reports/store.js';

export type { Transition } from './findings/book.js';

export interface EngineOptions {
  ttlSeconds: number;
  dropAfterSeconds: number;
  detect: DetectOptions;
  onTransition: (transition: Transition) => void;
  // The name the aggregator's own cluster goes by in reports ('' when its agents name none).
  homeCluster?: string;
  // NODE_NO_AGENT waits this long after a Node appears, the aggregator starts, or it last turned
  // an agent away (agentTurnedAway). Default: the TTL.
  noAgentGraceSeconds?: number;
  // CALICO_CONFIG_DRIFT waits this long; default 360 s, twice Felix's 180 s refresh.
  driftGraceSeconds?: number;
  now?: () => number;
}

// What the latest report of a node concluded, kept beside the compressed report.
interface NodeState {
  machineId: string | undefined;
  calicoMode: CalicoMode | undefined;
  calicoModeFromConfig: boolean; // the rules could not tell (Calico's rules alone), the configuration did
  illumioOnHost: boolean;
  context: string; // the cluster view's context the analysis had, to know when to redo it
}

// Scopes of the finding book (see findings/book.ts).
const SCOPE = {
  report: (key: string) => `report:${key}`,
  stale: (key: string) => `stale:${key}`,
  machineId: (id: string) => `machine-id:${id}`,
  mixed: (cluster: string) => `calico-mixed:${cluster}`,
  noAgent: 'no-agent',
  systemUuid: 'system-uuid',
  calicoConfig: 'calico-config',
  calicoDrift: 'calico-drift',
};

export class Engine {
  readonly book: FindingBook;
  readonly homeCluster: string;
  private readonly reports = new ReportStore();
  private readonly states = new Map<string, NodeState>();
  private readonly machineIds = new MachineIdGroups();
  private readonly modes = new CalicoModeVotes();
  private readonly ttlMs: number;
  private readonly dropAfterMs: number;
  private readonly noAgentGraceMs: number;
  private readonly driftGraceMs: number;
  private readonly detect: DetectOptions;
  private readonly now: () => number;
  private readonly startedAt: number;
  private turnedAwayAt = -Infinity;
  private facts: ClusterFacts | undefined;
  private disagreeing = new Map<string, number>();
  // The cluster view's findings of each node, by node key (their `nodes` is only a sample).
  private viewFindingsByNode = new Map<string, string[]>();
  private sortedKeys: string[] | undefined;
  readonly ttlSeconds: number;
  readonly dropAfterSeconds: number;

  constructor(options: EngineOptions) {
    this.book = new FindingBook(options.onTransition);
    this.homeCluster = options.homeCluster ?? '';
    this.ttlSeconds = options.ttlSeconds;
    this.dropAfterSeconds = options.dropAfterSeconds;
    this.ttlMs = options.ttlSeconds * 1000;
    this.dropAfterMs = options.dropAfterSeconds * 1000;
    this.noAgentGraceMs = (options.noAgentGraceSeconds ?? options.ttlSeconds) * 1000;
    this.driftGraceMs = (options.driftGraceSeconds ?? 360) * 1000;
    this.detect = options.detect;
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
  }

  // ---- reports ----

  /**
   * Keeps the report as its node's latest; returns the findings that concern the node.
   * `fingerprint`: reports/fingerprint.ts's digest of rawJson, when the caller has it already.
   */
  ingest(report: NodeReport, rawJson: string, fingerprint?: string): Finding[] {
    const now = this.now();
    const key = nodeKey(report);
    const known = this.reports.get(key) !== undefined;
    const { repeated, wasStale } = this.reports.put(key, report, rawJson, now, fingerprint);
    if (!known) this.sortedKeys = undefined;
    if (!repeated) {
      if (wasStale) this.book.clear(SCOPE.stale(key), now);
      this.analyze(key, report, now);
    }
    return this.findingsOfNode(key);
  }

  /** The node whose live report a report with this fingerprint repeats (a heartbeat), if any. */
  repeatOf(fingerprint: string): { key: string; name: string; cluster: string } | undefined {
    return this.reports.repeatOf(fingerprint);
  }

  /**
   * A heartbeat known by its fingerprint: the node is fresh, its facts unchanged. Undefined when
   * its report is no longer live (it went stale or was replaced meanwhile): then ingest it in full.
   */
  heartbeat(fingerprint: string, collectedAt: string): Finding[] | undefined {
    const entry = this.reports.repeatOf(fingerprint);
    if (!entry) return undefined;
    this.reports.touch(entry, this.now(), collectedAt);
    return this.findingsOfNode(entry.key);
  }

  /**
   * An agent was answered 503 (its token could not be reviewed now) and will retry: whichever
   * node it runs on, a node without a report may be its node, so NODE_NO_AGENT waits its grace
   * again. After a restart in a large cluster, thousands of first reports wait for their reviews,
   * and none of their nodes is said to have no agent meanwhile.
   */
  agentTurnedAway(): void {
    this.turnedAwayAt = this.now();
  }

  /** Marks nodes silent past the TTL stale, forgets those silent past the drop time, and re-checks the view's findings. */
  sweep(): void {
    const now = this.now();
    for (const entry of this.reports.silentSince(now, this.ttlMs)) {
      if (now - entry.lastSeen > this.dropAfterMs) this.forget(entry, now, 'node dropped');
      else if (!entry.stale) this.markStale(entry, now);
    }
    if (this.facts) this.checkView(now);
  }

  private analyze(key: string, report: NodeReport, now: number): void {
    const context = this.contextOf(key);
    const analysis = analyzeNode(report, this.detect, context);
    this.states.set(key, {
      machineId: analysis.machineId,
      calicoMode: analysis.calicoMode,
      calicoModeFromConfig: analysis.calicoModeFromConfig,
      illumioOnHost: analysis.illumioPresent,
      context: JSON.stringify(context),
    });
    this.book.set(SCOPE.report(key), analysis.findings, now);
    this.placeMachineId(key, now);
    this.placeMode(key, this.reports.get(key)!.cluster, analysis.calicoMode, now);
  }

  private markStale(entry: ReportEntry, now: number): void {
    this.reports.markStale(entry);
    // A node that went away no longer duplicates anyone's ID with its report, nor votes on modes.
    this.placeMachineId(entry.key, now);
    this.placeMode(entry.key, entry.cluster, undefined, now);
    const draft = nodeStaleFinding(entry.key, new Date(entry.lastSeen).toISOString(), this.ttlSeconds, this.dropAfterSeconds);
    this.book.set(SCOPE.stale(entry.key), [draft], now);
  }

  /** Forgets a node's report and what it said, resolving its findings with `reason`. */
  private forget(entry: ReportEntry, now: number, reason: string): void {
    this.reports.delete(entry.key);
    this.states.delete(entry.key);
    this.sortedKeys = undefined;
    this.book.clear(SCOPE.report(entry.key), now, reason);
    this.book.clear(SCOPE.stale(entry.key), now, reason);
    this.placeMachineId(entry.key, now, reason);
    this.placeMode(entry.key, entry.cluster, undefined, now, reason);
  }

  // ---- what the nodes say together ----

  /**
   * Files the node under the machine ID that counts for it now: its live report's, else the
   * kubelet's copy when the Node exists, else none; and words the duplicate groups that changed.
   */
  private placeMachineId(key: string, now: number, reason?: string): void {
    const entry = this.reports.get(key);
    let id: string | undefined;
    let source: MachineIdSource = 'agent';
    if (entry && !entry.stale) id = this.states.get(key)?.machineId;
    else {
      const node = this.apiNode(key);
      id = node?.kubeletAppId;
      source = 'kubelet';
    }
    for (const changed of this.machineIds.set(key, id, source)) this.wordDuplicate(changed, now, reason);
  }

  private wordDuplicate(id: string, now: number, reason?: string): void {
    const group = this.machineIds.group(id);
    if (!group || group.members.size < 2) {
      this.book.clear(SCOPE.machineId(id), now, reason);
      return;
    }
    const sample: { node: string; source: MachineIdSource }[] = [];
    for (const [node, source] of group.members) {
      sample.push({ node, source });
      if (sample.length >= FINDING_NODES) break;
    }
    this.book.set(SCOPE.machineId(id), [duplicateMachineIdFinding(id, sample, group.members.size, group.sources)], now);
  }

  private placeMode(key: string, cluster: string, mode: CalicoMode | undefined, now: number, reason?: string): void {
    for (const changed of this.modes.set(key, cluster, mode)) this.wordMixed(changed, now, reason);
  }

  private wordMixed(cluster: string, now: number, reason?: string): void {
    const votes = this.modes.votes(cluster);
    if (!votes || !this.modes.isMixed(cluster)) {
      this.book.clear(SCOPE.mixed(cluster), now, reason);
      return;
    }
    const minority: CalicoMode = votes.insert.size <= votes.append.size ? 'insert' : 'append';
    const sample: string[] = [];
    for (const node of votes[minority]) {
      sample.push(node);
      if (sample.length >= FINDING_NODES) break;
    }
    const draft = calicoModeMixedFinding(cluster, { insert: votes.insert.size, append: votes.append.size }, minority, sample);
    this.book.set(SCOPE.mixed(cluster), [draft], now);
  }

  // ---- the cluster view ----

  get clusterView(): ClusterFacts | undefined {
    return this.facts;
  }

  /** The key of a Node of the aggregator's own cluster. */
  keyOf(name: string): string {
    return this.homeCluster === '' ? name : `${this.homeCluster}/${name}`;
  }

  private apiNode(key: string) {
    if (!this.facts) return undefined;
    const slash = key.indexOf('/');
    const cluster = slash < 0 ? '' : key.slice(0, slash);
    if (cluster !== this.homeCluster) return undefined;
    return this.facts.nodes.get(slash < 0 ? key : key.slice(slash + 1));
  }

  /** What the cluster view adds to the analysis of one node's report. */
  private contextOf(key: string): NodeContext {
    const node = this.apiNode(key);
    if (!node || !this.facts) return {};
    const configured = configuredCalicoMode(this.facts.calico, node.name);
    const context: NodeContext = {};
    if (node.kubeletAppId) context.kubeletAppId = node.kubeletAppId;
    if (this.facts.illumio.cvenNodes.has(node.name)) context.illumioFromApi = true;
    if (configured) context.configuredCalico = configured;
    return context;
  }

  /**
   * Takes the cluster view as it is now (undefined: off). Nodes deleted from the API are
   * forgotten at once; nodes whose context changed are analysed again; the view's findings are
   * worked out again. O(nodes): call it when the view changed, not per report.
   */
  setClusterFacts(facts: ClusterFacts | undefined): void {
    const now = this.now();
    const before = this.facts;
    this.facts = facts;
    this.sortedKeys = undefined;
    if (before) {
      for (const name of before.nodes.keys()) {
        if (facts?.nodes.has(name)) continue;
        const key = this.keyOf(name);
        const entry = this.reports.get(key);
        if (entry) this.forget(entry, now, 'node deleted');
        else this.placeMachineId(key, now, 'node deleted');
      }
    }
    if (facts) {
      for (const name of facts.nodes.keys()) {
        const key = this.keyOf(name);
        const entry = this.reports.get(key);
        if (!entry || entry.stale) this.placeMachineId(key, now);
      }
    }
    for (const [key, state] of this.states) {
      if (JSON.stringify(this.contextOf(key)) === state.context) continue;
      const report = this.reports.report(key);
      if (report) this.analyze(key, report, now);
    }
    this.checkView(now);
  }

  private illumioOnNode(name: string): boolean {
    return (this.facts?.illumio.cvenNodes.has(name) ?? false) || (this.states.get(this.keyOf(name))?.illumioOnHost ?? false);
  }

  private checkView(now: number): void {
    const facts = this.facts;
    if (!facts) {
      for (const scope of [SCOPE.noAgent, SCOPE.systemUuid, SCOPE.calicoConfig, SCOPE.calicoDrift]) this.book.clear(scope, now, 'cluster view off');
      this.viewFindingsByNode = new Map();
      return;
    }
    const keyOf = (name: string) => this.keyOf(name);
    const members = new Map<string, string[]>();
    const noAgent = detectNodesWithoutAgent({
      facts, keyOf, now, hearingSince: Math.max(this.startedAt, this.turnedAwayAt), graceMs: this.noAgentGraceMs,
      hasReport: (key) => this.reports.get(key) !== undefined,
    });
    for (const d of noAgent) members.set(d.id, d.nodes);
    this.book.set(SCOPE.noAgent, noAgent, now);
    const uuids = detectSystemUuidDuplicates(facts, keyOf);
    this.book.set(SCOPE.systemUuid, uuids.drafts, now);
    const config = detectCalicoConfigNotAppend({ facts, keyOf, illumioOnNode: (name) => this.illumioOnNode(name) });
    this.book.set(SCOPE.calicoConfig, config.drafts, now);
    const drift = detectCalicoDrift({
      facts, keyOf, now, graceMs: this.driftGraceMs, previous: this.disagreeing,
      observed: (key) => {
        const state = this.states.get(key);
        const entry = this.reports.get(key);
        return state && entry && !entry.stale && !state.calicoModeFromConfig ? state.calicoMode : undefined;
      },
    });
    this.disagreeing = drift.disagreeing;
    this.book.set(SCOPE.calicoDrift, drift.drafts, now);
    for (const m of [uuids.members, config.members, drift.members]) for (const [id, nodes] of m) members.set(id, nodes);
    const byNode = new Map<string, string[]>();
    for (const [id, nodes] of members) {
      for (const node of nodes) {
        const ids = byNode.get(node);
        if (ids) ids.push(id);
        else byNode.set(node, [id]);
      }
    }
    this.viewFindingsByNode = byNode;
  }

  /** Lets another source (the Illumio checks) keep its findings in the book. */
  setFindings(scope: string, drafts: FindingDraft[]): Finding[] {
    return this.book.set(scope, drafts, this.now());
  }

  // ---- queries ----

  /** The active findings that concern one node, most severe first. */
  findingsOfNode(key: string): Finding[] {
    const out = [...this.book.scope(SCOPE.report(key)), ...this.book.scope(SCOPE.stale(key))];
    const duplicate = this.machineIds.duplicateOf(key);
    if (duplicate !== undefined) out.push(...this.book.scope(SCOPE.machineId(duplicate)));
    const entry = this.reports.get(key);
    const cluster = entry?.cluster ?? '';
    // Every node that votes in a mixed cluster is concerned, not only the listed minority.
    if (this.modes.modeOf(key) !== undefined && this.modes.isMixed(cluster)) out.push(...this.book.scope(SCOPE.mixed(cluster)));
    for (const id of this.viewFindingsByNode.get(key) ?? []) {
      const finding = this.book.get(id);
      if (finding) out.push(finding);
    }
    return out.sort(byImportance);
  }

  private hasCode(key: string, code: FindingCode): boolean {
    return this.findingsOfNode(key).some((f) => f.code === code);
  }

  /** Every node key: reported, or a Node of the cluster view; in key order. */
  private keys(): string[] {
    if (!this.sortedKeys) {
      const keys = new Set(this.reports.keys());
      if (this.facts) for (const name of this.facts.nodes.keys()) keys.add(this.keyOf(name));
      this.sortedKeys = [...keys].sort();
    }
    return this.sortedKeys;
  }

  listNodes(query: Pick<NodeQuery, 'limit' | 'continue' | 'cluster' | 'code'>): { nodes: NodeSummary[]; continue?: string } {
    const keys = this.keys();
    const after = query.continue === undefined ? undefined : decodeCursor(query.continue);
    let i = after === undefined ? 0 : upperBound(keys, after);
    const nodes: NodeSummary[] = [];
    for (; i < keys.length; i++) {
      const key = keys[i]!;
      const summary = this.summary(key);
      if (!summary) continue;
      if (query.cluster !== undefined && (summary.cluster ?? '') !== query.cluster) continue;
      if (query.code !== undefined && !this.hasCode(key, query.code)) continue;
      nodes.push(summary);
      if (nodes.length >= query.limit) break;
    }
    return i < keys.length - 1 ? { nodes, continue: encodeCursor(keys[i]!) } : { nodes };
  }

  getNode(key: string): NodeDetail | undefined {
    const summary = this.summary(key);
    if (!summary) return undefined;
    const report = this.reports.report(key);
    return { ...summary, ...(report ? { report } : {}), activeFindings: this.findingsOfNode(key) };
  }

  private summary(key: string): NodeSummary | undefined {
    const entry = this.reports.get(key);
    const inApi = this.apiNode(key) !== undefined;
    if (!entry && !inApi) return undefined;
    const cluster = entry ? entry.cluster : this.homeCluster;
    const id = this.machineIds.entry(key);
    const mode = this.modes.modeOf(key);
    return {
      name: key,
      ...(cluster === '' ? {} : { cluster }),
      inApi,
      reporting: entry !== undefined && !entry.stale,
      ...(entry ? { lastSeen: new Date(entry.lastSeen).toISOString() } : {}),
      stale: entry?.stale ?? false,
      ...(id ? { machineId: id.id, machineIdSource: id.source } : {}),
      // A stale node no longer votes, but its last known mode is still worth showing.
      ...(mode ?? this.states.get(key)?.calicoMode ? { calicoMode: (mode ?? this.states.get(key)?.calicoMode)! } : {}),
      findings: this.findingsOfNode(key).length,
    };
  }

  listFindings(query: Partial<FindingQuery> = {}): { findings: Finding[]; continue?: string } {
    const wanted = (f: Finding) => (query.code === undefined || f.code === query.code) && (query.severity === undefined || f.severity === query.severity);
    const all = query.node !== undefined ? this.findingsOfNode(query.node) : this.book.all();
    const limit = query.limit ?? Infinity;
    let start = 0;
    if (query.continue !== undefined) {
      // After the last finding of the previous page, by the list's order.
      const after = decodeCursor(query.continue);
      while (start < all.length && findingPosition(all[start]!) <= after) start++;
    }
    const findings: Finding[] = [];
    let i = start;
    for (; i < all.length; i++) {
      if (!wanted(all[i]!)) continue;
      findings.push(all[i]!);
      if (findings.length >= limit) break;
    }
    if (i < all.length - 1) {
      const last = all[i]!;
      return { findings, continue: encodeCursor(findingPosition(last)) };
    }
    return { findings };
  }

  counts(): NodeCounts {
    const counts: NodeCounts = { known: this.keys().length, reporting: this.reports.size - this.reports.staleCount, stale: this.reports.staleCount };
    if (this.facts) {
      let reporting = 0;
      for (const name of this.facts.nodes.keys()) {
        const entry = this.reports.get(this.keyOf(name));
        if (entry && !entry.stale) reporting++;
      }
      counts.inApi = this.facts.nodes.size;
      counts.inApiReporting = reporting;
    }
    return counts;
  }

  /** How many live nodes show Calico (in either mode). */
  calicoNodes(): number {
    return this.modes.voters;
  }

  /** The id a finding of this code about this subject has (for tests and links). */
  static findingId(code: FindingCode, subject: string[]): string {
    return findingId(code, subject);
  }
}

// A continue token is a position in the list's order, base64url: any token of that form (the
// query schema, protocol/api.ts CONTINUE_TOKEN) decodes to some position, so there is no token
// to refuse and none that expires. A made-up one starts the page wherever it falls.
function encodeCursor(position: string): string {
  return Buffer.from(position, 'utf8').toString('base64url');
}

function decodeCursor(token: string): string {
  return Buffer.from(token, 'base64url').toString('utf8');
}

/**
 * A finding's position in the findings' order (findings/book.ts byImportance: severity, code,
 * id) as a string that sorts the same way: the rank is one digit, and "\0" sorts before any
 * character of a code or an id.
 */
function findingPosition(f: Pick<Finding, 'severity' | 'code' | 'id'>): string {
  return `${severityRank[f.severity]}\0${f.code}\0${f.id}`;
}

/** The index of the first key greater than `key`. */
function upperBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
