// Nodes by (application-specific) machine ID, to find the ones that share one. A node counts
// with the ID its agent reported while its report is live, and otherwise, when the cluster view
// has the node, with the kubelet's copy (status.nodeInfo.machineID, derived the same way): a
// node whose agent never started is still a node that may have been cloned. O(1) per change.

export type MachineIdSource = 'agent' | 'kubelet';

export interface MachineIdGroup {
  id: string;
  members: Map<string, MachineIdSource>; // node key -> where its ID came from, in joining order
  sources: Record<MachineIdSource, number>;
}

export class MachineIdGroups {
  private readonly groups = new Map<string, MachineIdGroup>();
  private readonly byNode = new Map<string, { id: string; source: MachineIdSource }>();

  /**
   * Files `node` under `id` (or under nothing). Returns the IDs whose groups changed: the one the
   * node left and the one it joined.
   */
  set(node: string, id: string | undefined, source: MachineIdSource): string[] {
    const current = this.byNode.get(node);
    if (current?.id === id && (id === undefined || current?.source === source)) return [];
    const changed: string[] = [];
    if (current) {
      const group = this.groups.get(current.id)!;
      group.members.delete(node);
      group.sources[current.source]--;
      if (group.members.size === 0) this.groups.delete(current.id);
      this.byNode.delete(node);
      changed.push(current.id);
    }
    if (id !== undefined) {
      let group = this.groups.get(id);
      if (!group) this.groups.set(id, (group = { id, members: new Map(), sources: { agent: 0, kubelet: 0 } }));
      group.members.set(node, source);
      group.sources[source]++;
      this.byNode.set(node, { id, source });
      if (!changed.includes(id)) changed.push(id);
    }
    return changed;
  }

  group(id: string): MachineIdGroup | undefined {
    return this.groups.get(id);
  }

  /** The ID of the duplicate group the node is in, if it is in one. */
  duplicateOf(node: string): string | undefined {
    const entry = this.byNode.get(node);
    return entry && (this.groups.get(entry.id)?.members.size ?? 0) > 1 ? entry.id : undefined;
  }

  entry(node: string): { id: string; source: MachineIdSource } | undefined {
    return this.byNode.get(node);
  }
}
