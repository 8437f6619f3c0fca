// The latest result of every source, as the reports tell it. `run` reads its sources at different
// rates (read-schedule.ts): each report is made of what each source said last, every result
// smoothed once, when it was read (source-hysteresis.ts), not once per report.
import type { IptablesRuleset } from '../protocol/report.js';
import type { SaveBackend } from './collect-iptables.js';
import type { Sample, Sourced } from './collect.js';
import type { SourceHysteresis } from './source-hysteresis.js';

type Rulesets = Sourced<IptablesRuleset | undefined>[];

// The order collect-iptables.ts runs the saves in, which is the order reports have always had.
const SAVE_ORDER = ['iptables-nft-save', 'iptables-legacy-save', 'ip6tables-nft-save', 'ip6tables-legacy-save'];
const rank = (part: Sourced<unknown>) => {
  const i = SAVE_ORDER.indexOf(part.source);
  return i < 0 ? SAVE_ORDER.length : i;
};
const isLegacy = (part: Sourced<IptablesRuleset | undefined>) => (part.value ? part.value.backend === 'legacy' : part.source.includes('legacy'));

export const LISTENER_SOURCE = 'xtables-monitor';

export class LatestSample {
  private host: Pick<Sample, 'etc' | 'dbus' | 'illumio'> | undefined;
  private nft: Rulesets = [];
  private legacy: Rulesets = [];
  private nftTables: Sample['nft'] = { source: 'nft', value: [] };
  private listener: Sourced<undefined> | undefined;

  constructor(private readonly hysteresis: SourceHysteresis) {}

  setHost(host: Pick<Sample, 'etc' | 'dbus' | 'illumio'>): void {
    this.host = { etc: this.hysteresis.apply(host.etc), dbus: this.hysteresis.apply(host.dbus), illumio: this.hysteresis.apply(host.illumio) };
  }

  /** What a read of `backends` returned: it replaces what those backends said before. */
  setRulesets(backends: readonly SaveBackend[], parts: Rulesets): void {
    const both = backends.includes('nft') && backends.includes('legacy');
    // The source as a whole failed (it hung): one entry, kept apart per backend read alone.
    const named = parts.map((p) => (p.source === 'iptables' && !both ? { ...p, source: `iptables ${backends[0]}` } : p));
    const smoothed = named.map((p) => this.hysteresis.apply(p));
    if (both) {
      this.nft = smoothed.filter((p) => !isLegacy(p));
      this.legacy = smoothed.filter(isLegacy);
    } else if (backends.includes('nft')) this.nft = smoothed;
    else this.legacy = smoothed;
  }

  setNftTables(part: Sample['nft']): void {
    this.nftTables = this.hysteresis.apply(part);
  }

  /** The listener listens: a good result for it. */
  listenerUp(): void {
    this.listener = this.hysteresis.apply({ source: LISTENER_SOURCE, value: undefined });
  }

  /** The listener died or could not start: one failure. */
  listenerFailed(message: string): void {
    this.listener = this.hysteresis.apply({ source: LISTENER_SOURCE, value: undefined, error: message });
  }

  /** The report's sample: what every source said last. */
  sample(): Sample {
    if (!this.host) throw new Error('no host files read yet');
    const rulesets = [...this.nft, ...this.legacy].sort((a, b) => rank(a) - rank(b));
    const sample: Sample = { ...this.host, rulesets, nft: this.nftTables, ...(this.listener ? { listener: this.listener } : {}) };
    // A source no longer read (the legacy saves once the legacy tables are gone) starts afresh.
    this.hysteresis.retain([sample.etc, sample.dbus, sample.illumio, ...rulesets, sample.nft, ...(this.listener ? [this.listener] : [])].map((p) => p.source));
    return sample;
  }
}
