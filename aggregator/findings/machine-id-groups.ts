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
  // Nearly every ID has one node: such a group is that node's key alone, not a Map of one (about
  // 200 bytes a node at 100,000 nodes). A second member makes it a MachineIdGroup.
  private readonly groups = new Map<string, string | MachineIdGroup>();
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
      this.leave(node, current.id, current.source);
      this.byNode.delete(node);
      changed.push(current.id);
    }
    if (id !== undefined) {
      this.join(node, id, source);
      this.byNode.set(node, { id, source });
      if (!changed.includes(id)) changed.push(id);
    }
    return changed;
  }

  private join(node: string, id: string, source: MachineIdSource): void {
    const found = this.groups.get(id);
    if (found === undefined) {
      this.groups.set(id, node);
      return;
    }
    let group = found;
    if (typeof group === 'string') this.groups.set(id, (group = this.single(id, group)));
    group.members.set(node, source);
    group.sources[source]++;
  }

  private leave(node: string, id: string, source: MachineIdSource): void {
    const found = this.groups.get(id);
    if (typeof found !== 'object') {
      this.groups.delete(id);
      return;
    }
    found.members.delete(node);
    found.sources[source]--;
    if (found.members.size === 1) this.groups.set(id, found.members.keys().next().value!);
  }

  /** The group of one node, as a MachineIdGroup. */
  private single(id: string, sole: string): MachineIdGroup {
    const source = this.byNode.get(sole)!.source;
    const group: MachineIdGroup = { id, members: new Map([[sole, source]]), sources: { agent: 0, kubelet: 0 } };
    group.sources[source]++;
    return group;
  }

  group(id: string): MachineIdGroup | undefined {
    const found = this.groups.get(id);
    return typeof found === 'string' ? this.single(id, found) : found;
  }

  /** The ID of the duplicate group the node is in, if it is in one. */
  duplicateOf(node: string): string | undefined {
    const entry = this.byNode.get(node);
    return entry && typeof this.groups.get(entry.id) === 'object' ? entry.id : undefined;
  }

  entry(node: string): { id: string; source: MachineIdSource } | undefined {
    return this.byNode.get(node);
  }
}
