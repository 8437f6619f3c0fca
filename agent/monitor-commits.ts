// What `xtables-monitor -e` (iptables 1.8, package iptables) prints for each nftables commit,
// turned into commits: the generation, the process that made it, and the rules it added to
// built-in chains. Pure: lines in, commits out; agent/xtables-monitor.ts runs the command.
//
// The kernel sends a notification for every object a commit changes, then one NFT_MSG_NEWGEN
// naming the new generation and the committing process (net/netfilter/nf_tables_api.c,
// nf_tables_gen_notify), which xtables-monitor prints as (iptables/xtables-monitor.c):
//
//    EVENT: -4 -t filter -A INPUT -m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT
//    EVENT: -4 -t filter -D INPUT -j illumio-INPUT
//    EVENT: nft: NEW table: table calico ip flags 0 use 0 handle 2
//   NEWGEN: GENID=12 PID=4711 NAME=iptables-nft-re
//
// Rules come in iptables-save syntax, always as -A (a new rule, wherever it was inserted) or -D.
// The name is the kernel's comm of the committing process, cut at 15 characters
// (iptables-nft-restore is `iptables-nft-re`). Generation numbers go up by one per commit in the
// network namespace, so a gap means commits went unseen.
import type { Family } from '../protocol/report.js';
import { parseRule } from './iptables-save.js';
import { WATCHED_NFT_TABLES } from './collect-nft.js';

/** A rule a commit added to a built-in chain, and where it jumps. */
export interface AddedRule {
  family: Family;
  table: string;
  chain: string;
  target: string;
}

export interface Commit {
  generation: number;
  pid: number;
  /** The committing process as the kernel names it (comm: at most 15 characters). */
  writer: string;
  /** Rules added to built-in chains, at most MAX_ADDED (a full restore adds thousands elsewhere). */
  added: AddedRule[];
  /** One of the nftables tables the agent looks for (collect-nft.ts) came or went. */
  watchedTable: boolean;
}

export type MonitorLine =
  | { kind: 'rule'; op: 'add' | 'delete'; family: Family; table: string; chain: string; target: string }
  | { kind: 'table'; op: 'add' | 'delete'; family: string; name: string }
  | { kind: 'generation'; generation: number; pid: number; writer: string }
  | { kind: 'other' };

// The chains the kernel hooks; a rule added anywhere else cannot take the head of one.
const BUILTIN_CHAINS = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);
const MAX_ADDED = 64;

const RULE = /^ EVENT: -([46]) -t (\S+) -([AD]) (\S+)/;
const TABLE = /^ EVENT: nft: (NEW|DEL) table: table (\S+) (\S+)/;
// Anywhere in the line: for a rule it cannot print (a family other than ip, ip6 and arp),
// xtables-monitor may leave " EVENT: " without its newline.
const GENERATION = /NEWGEN: GENID=(\d+) PID=(\d+) NAME=(.*)$/;

export function parseMonitorLine(line: string): MonitorLine {
  const generation = GENERATION.exec(line);
  if (generation) return { kind: 'generation', generation: Number(generation[1]), pid: Number(generation[2]), writer: generation[3]! };
  const rule = RULE.exec(line);
  if (rule) {
    const parsed = parseRule(line, rule[0].length, line.length);
    return { kind: 'rule', op: rule[3] === 'A' ? 'add' : 'delete', family: rule[1] === '4' ? 'ipv4' : 'ipv6', table: rule[2]!, chain: rule[4]!, target: parsed?.target ?? '' };
  }
  const table = TABLE.exec(line);
  if (table) return { kind: 'table', op: table[1] === 'NEW' ? 'add' : 'delete', name: table[2]!, family: table[3]! };
  return { kind: 'other' };
}

const WATCHED = new Set(WATCHED_NFT_TABLES.map((t) => `${t.family} ${t.name}`));

/**
 * Collects the lines of one commit until its generation line. Feed it every line of one
 * xtables-monitor process; a new process (after a restart) needs a new reader.
 */
export class CommitReader {
  private added = new Map<string, AddedRule>();
  private watchedTable = false;
  private last: number | undefined;

  /** The commit this line completes, if any, and the generations skipped before it. */
  push(line: string): { commit?: Commit; skipped?: { from: number; to: number } } {
    const parsed = parseMonitorLine(line);
    switch (parsed.kind) {
      case 'rule':
        if (parsed.op === 'add' && BUILTIN_CHAINS.has(parsed.chain) && this.added.size < MAX_ADDED) {
          const { op: _, kind: __, ...rule } = parsed;
          this.added.set(`${rule.family}/${rule.table}/${rule.chain}/${rule.target}`, rule);
        }
        return {};
      case 'table':
        if (WATCHED.has(`${parsed.family} ${parsed.name}`)) this.watchedTable = true;
        return {};
      case 'other':
        return {};
      case 'generation': {
        const commit: Commit = { generation: parsed.generation, pid: parsed.pid, writer: parsed.writer, added: [...this.added.values()], watchedTable: this.watchedTable };
        const last = this.last;
        this.added = new Map();
        this.watchedTable = false;
        this.last = parsed.generation;
        // The counter is 32 bits and wraps; anything but the next number is a gap.
        const skipped = last !== undefined && parsed.generation !== ((last + 1) >>> 0) ? { from: (last + 1) >>> 0, to: (parsed.generation - 1) >>> 0 } : undefined;
        return skipped ? { commit, skipped } : { commit };
      }
    }
  }
}
