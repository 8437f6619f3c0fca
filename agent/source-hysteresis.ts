// A source that fails once is not an error yet. One slow iptables-save (a busy host, a ruleset
// being rewritten) would otherwise send a report with an error entry and, 15 s later, one
// without: AGENT_COLLECTION_ERROR raised and resolved, two alerts about nothing. So a source's
// error enters the reports only when it fails in two consecutive samples, and leaves them only
// after two consecutive successes; a flapping source stays reported instead of flapping. While a
// single failure is forgiven, the report carries that source's last good result.
//
// This lives in the agent, not in the aggregator, because only the agent sees every sample: the
// aggregator sees reports, which are sent when the facts change or a heartbeat is due, so it
// cannot count consecutive samples; and only the agent has the last good result to carry, where
// the aggregator would have to keep a second report per node.
import type { Sample, Sourced } from './collect.js';

interface SourceState {
  failures: number; // consecutive
  successes: number; // consecutive
  lastGood?: { value: unknown };
  reported?: string; // the error the reports carry, while they carry one
}

export class SourceHysteresis {
  private states = new Map<string, SourceState>();

  /** The sample as the report should tell it, given the samples before it. */
  smooth(sample: Sample): Sample {
    const out: Sample = {
      etc: this.apply(sample.etc),
      dbus: this.apply(sample.dbus),
      illumio: this.apply(sample.illumio),
      rulesets: sample.rulesets.map((r) => this.apply(r)),
      nft: this.apply(sample.nft),
    };
    this.retain([out.etc, out.dbus, out.illumio, ...out.rulesets, out.nft].map((p) => p.source));
    return out;
  }

  /**
   * One source's fresh result as the reports should tell it, given its results before. Call it
   * once per time the source is read, not per report: the agent reads its sources at different
   * rates (run.ts), and a result reported twice is not a second success or failure.
   */
  apply<T>(part: Sourced<T>): Sourced<T> {
    let state = this.states.get(part.source);
    if (!state) this.states.set(part.source, (state = { failures: 0, successes: 0 }));
    if (part.error === undefined) {
      state.failures = 0;
      state.successes++;
      state.lastGood = { value: part.value };
      if (state.reported !== undefined && state.successes >= 2) state.reported = undefined;
      // The first success after a reported error: fresh facts, and the error for one more sample.
      return state.reported === undefined ? part : { ...part, error: state.reported };
    }
    state.successes = 0;
    state.failures++;
    // Forgiven once, when there is a good result to stand in for it. Without one (the agent's
    // first sample), hiding the error would leave the report saying something false, such as
    // "no machine ID".
    if (state.reported === undefined && state.failures < 2 && state.lastGood) return { source: part.source, value: state.lastGood.value as T };
    state.reported = part.error;
    return part;
  }

  /** Forgets every source but these: one that no longer runs (a legacy save once the legacy tables are gone) starts afresh. */
  retain(sources: Iterable<string>): void {
    const keep = new Set(sources);
    for (const source of this.states.keys()) if (!keep.has(source)) this.states.delete(source);
  }
}
