// Calico's mode per node, grouped by cluster, to see when the nodes of one cluster disagree
// (CALICO_MODE_MIXED): a rollout under way, or a per-node setting. Live nodes only.

export type CalicoMode = 'insert' | 'append';

export interface ModeVotes {
  insert: Set<string>;
  append: Set<string>;
}

export class CalicoModeVotes {
  private readonly clusters = new Map<string, ModeVotes>();
  private readonly byNode = new Map<string, { cluster: string; mode: CalicoMode }>();

  /** Records the node's mode (or none). Returns the clusters whose votes changed. */
  set(node: string, cluster: string, mode: CalicoMode | undefined): string[] {
    const current = this.byNode.get(node);
    if (current?.cluster === cluster && current.mode === mode) return [];
    if (current === undefined && mode === undefined) return [];
    const changed = new Set<string>();
    if (current) {
      const votes = this.clusters.get(current.cluster)!;
      votes[current.mode].delete(node);
      if (votes.insert.size === 0 && votes.append.size === 0) this.clusters.delete(current.cluster);
      this.byNode.delete(node);
      changed.add(current.cluster);
    }
    if (mode !== undefined) {
      let votes = this.clusters.get(cluster);
      if (!votes) this.clusters.set(cluster, (votes = { insert: new Set(), append: new Set() }));
      votes[mode].add(node);
      this.byNode.set(node, { cluster, mode });
      changed.add(cluster);
    }
    return [...changed];
  }

  votes(cluster: string): ModeVotes | undefined {
    return this.clusters.get(cluster);
  }

  isMixed(cluster: string): boolean {
    const votes = this.clusters.get(cluster);
    return votes !== undefined && votes.insert.size > 0 && votes.append.size > 0;
  }

  /** How many nodes have a mode. */
  get voters(): number {
    return this.byNode.size;
  }

  modeOf(node: string): CalicoMode | undefined {
    return this.byNode.get(node)?.mode;
  }
}
