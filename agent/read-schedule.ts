// When the agent reads what (design.md section 10). Pure: times in, decisions out; run.ts does
// the reading.
//
// - The host's files (machine IDs, Illumio's markers) are cheap: every sample interval, and the
//   legacy iptables backend with them, since the kernel tells nobody of its changes.
// - The nftables rulesets (iptables-nft-save, 0.6-1 s of CPU on a busy node) are read when the
//   listener saw a commit: soon after it (settleMs, so that a burst of commits is read once),
//   and at most once per sample interval under churn, however many commits come. Without a
//   listener (it failed, or reads are set to every sample) they are read every sample, as the
//   legacy ones are.
// - The nftables tables nodeprep looks for (collect-nft.ts, four `nft list table`) are asked
//   about when the listener saw one of them come or go, and otherwise at most every tablesMs.
// - Everything, at least every fullReadMs: the safety net, as kube-proxy and Felix keep one.
export interface ReadScheduleOptions {
  sampleMs: number;
  fullReadMs: number;
  settleMs: number;
  tablesMs: number;
}

export interface Reads {
  /** Machine IDs, Illumio's markers, the health file. */
  host: boolean;
  /** The nft backend's rulesets. */
  nft: boolean;
  /** The legacy backend's rulesets (where legacy tables exist). */
  legacy: boolean;
  /** The nftables tables nodeprep looks for. */
  nftTables: boolean;
}

const NOTHING: Reads = { host: false, nft: false, legacy: false, nftTables: false };

export class ReadSchedule {
  private nextHostAt = 0;
  private nextFullAt = 0;
  private lastNftReadAt = -Infinity;
  private lastTablesAt = -Infinity;
  // The first change not yet read, and the latest one.
  private unreadSince: number | undefined;
  private latestChange = -Infinity;
  private tablesChanged = false;
  // Commits went unseen: a table may have come or gone too.
  private tablesUnsure = false;
  private latestMissed = -Infinity;

  constructor(private readonly opts: ReadScheduleOptions) {}

  /** The listener saw a commit; `tables`: one that added or removed a table nodeprep looks for. */
  changed(now: number, tables = false): void {
    this.unreadSince ??= now;
    this.latestChange = now;
    if (tables) this.tablesChanged = true;
  }

  /** Changes may have gone unseen (the listener overflowed, restarted, skipped generations). */
  missed(now: number): void {
    this.changed(now);
    this.tablesUnsure = true;
    this.latestMissed = now;
  }

  /** What is due at `now`; `listening`: whether the listener would tell of nftables commits. */
  due(now: number, listening: boolean): Reads {
    const full = now >= this.nextFullAt;
    const host = full || now >= this.nextHostAt;
    const nft = full || (listening ? this.unreadSince !== undefined && now >= this.changeReadAt(this.unreadSince) : host);
    const tablesStale = now - this.lastTablesAt >= this.opts.tablesMs;
    const nftTables = full || (listening ? (nft && this.tablesChanged) || (this.tablesUnsure && tablesStale) : host && tablesStale);
    if (!host && !nft && !nftTables) return NOTHING;
    return { host, nft, legacy: host, nftTables };
  }

  /** When something is next due (epoch ms). */
  nextAt(listening: boolean): number {
    let at = Math.min(this.nextHostAt, this.nextFullAt);
    if (listening && this.unreadSince !== undefined) at = Math.min(at, this.changeReadAt(this.unreadSince));
    if (listening && this.tablesUnsure) at = Math.min(at, this.lastTablesAt + this.opts.tablesMs);
    return at;
  }

  /**
   * `reads` started at `startedAt`. A commit seen after that may be missing from what was read:
   * it stays unread. `tablesFailed`: the tables could not be asked about; ask again next sample.
   */
  read(reads: Reads, startedAt: number, tablesFailed = false): void {
    const everything = reads.host && reads.nft && reads.legacy && reads.nftTables;
    if (everything) this.nextFullAt = startedAt + this.opts.fullReadMs;
    if (reads.host) this.nextHostAt = startedAt + this.opts.sampleMs;
    if (reads.nft) {
      this.lastNftReadAt = startedAt;
      this.unreadSince = this.latestChange > startedAt ? this.latestChange : undefined;
    }
    if (reads.nftTables) {
      this.lastTablesAt = tablesFailed ? -Infinity : startedAt;
      if (this.latestChange <= startedAt) this.tablesChanged = false;
      if (this.latestMissed <= startedAt) this.tablesUnsure = false;
    }
  }

  private changeReadAt(since: number): number {
    return Math.max(since + this.opts.settleMs, this.lastNftReadAt + this.opts.sampleMs);
  }
}
