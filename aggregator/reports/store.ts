// The latest report of each node (design.md section 2): replaced, not merged; kept compressed;
// marked stale after the TTL and forgotten after the drop time. Insertion order is last-seen
// order (an entry is re-inserted on every report), so finding the silent nodes looks only at
// the oldest entries. No findings here: the engine decides, this keeps.
import type { NodeReport } from '../../protocol/report.js';
import { ReportCodec } from './codec.js';
import { fingerprintOf } from './fingerprint.js';

export interface ReportEntry {
  key: string; // <cluster>/<name>, or <name> when the agent names no cluster
  cluster: string; // '' when the agent named none
  name: string;
  lastSeen: number; // ms since the epoch
  stale: boolean;
  report: string; // compressed, as received (codec.ts)
  // What the report says, collectedAt aside (fingerprint.ts): an agent's heartbeat repeats the
  // facts, and a repeated report needs no validation, no analysis and no compression.
  fingerprint: string;
  collectedAt: string;
}

export class ReportStore {
  private readonly entries = new Map<string, ReportEntry>();
  // Live entries by fingerprint: a heartbeat is known by its bytes, before it is parsed.
  private readonly live = new Map<string, ReportEntry>();
  // One string per cluster name, not one per report that spelt it.
  private readonly clusterNames = new Map<string, string>();
  private readonly codec = new ReportCodec();
  private staleEntries = 0;

  get size(): number {
    return this.entries.size;
  }

  get staleCount(): number {
    return this.staleEntries;
  }

  get(key: string): ReportEntry | undefined {
    return this.entries.get(key);
  }

  /** The live entry whose report has these facts: the one a heartbeat with this fingerprint repeats. */
  repeatOf(fingerprint: string): ReportEntry | undefined {
    return this.live.get(fingerprint);
  }

  /**
   * Keeps the report as the node's latest. `repeated` says it repeats the facts of a live
   * report (a heartbeat): then only the node's freshness changed.
   */
  put(key: string, report: NodeReport, rawJson: string, now: number, fingerprint = fingerprintOf(rawJson).digest): { entry: ReportEntry; repeated: boolean; wasStale: boolean } {
    const entry = this.entries.get(key);
    if (entry && !entry.stale && entry.fingerprint === fingerprint) {
      this.touch(entry, now, report.collectedAt);
      return { entry, repeated: true, wasStale: false };
    }
    const wasStale = entry?.stale ?? false;
    if (entry) this.delete(key);
    const fresh: ReportEntry = {
      key,
      cluster: this.clusterName(report.node.cluster ?? ''),
      name: report.node.name,
      lastSeen: now,
      stale: false,
      report: this.codec.compress(rawJson),
      fingerprint,
      collectedAt: report.collectedAt,
    };
    this.entries.set(key, fresh);
    this.live.set(fingerprint, fresh);
    return { entry: fresh, repeated: false, wasStale };
  }

  private clusterName(name: string): string {
    const known = this.clusterNames.get(name);
    if (known !== undefined) return known;
    this.clusterNames.set(name, name);
    return name;
  }

  /** A heartbeat: the node is still there, its facts unchanged. */
  touch(entry: ReportEntry, now: number, collectedAt: string): void {
    this.entries.delete(entry.key);
    entry.lastSeen = now;
    entry.collectedAt = collectedAt;
    this.entries.set(entry.key, entry);
  }

  /** The node's latest report, with the latest heartbeat's collectedAt. */
  report(key: string): NodeReport | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    const report = JSON.parse(this.codec.decompress(entry.report)) as NodeReport;
    report.collectedAt = entry.collectedAt; // the latest heartbeat's, which may repeat older facts
    return report;
  }

  markStale(entry: ReportEntry): void {
    if (entry.stale) return;
    entry.stale = true;
    this.staleEntries++;
    // A stale node's next report is analysed again, whatever it says.
    this.live.delete(entry.fingerprint);
  }

  delete(key: string): ReportEntry | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.stale) this.staleEntries--;
    else this.live.delete(entry.fingerprint);
    this.entries.delete(key);
    return entry;
  }

  /** Entries silent for longer than `silentMs`, oldest first (stops at the first fresh one). */
  *silentSince(now: number, silentMs: number): Generator<ReportEntry> {
    for (const entry of this.entries.values()) {
      if (now - entry.lastSeen <= silentMs) return;
      yield entry;
    }
  }

  keys(): IterableIterator<string> {
    return this.entries.keys();
  }
}
