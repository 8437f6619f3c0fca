// The listener: `xtables-monitor -e` as a child process, which tells the agent of every nftables
// commit in its network namespace (monitor-commits.ts reads its lines), restarted when it dies.
//
// Why xtables-monitor and not `nft monitor` (measured on the 5,000-service ruleset, nftables
// 1.0.6 and iptables 1.8.9; README, "How the agent reads"): every form of `nft monitor` first
// loads the whole ruleset into its cache, 13 s of CPU and 205 MiB at its peak before it prints
// anything, and every time it is restarted; its filtered forms (`nft monitor rules`, `new`, ...)
// and its JSON output print no generation lines, so no writer's name. xtables-monitor loads
// nothing: it starts in a few milliseconds with 2 MiB, prints the generation and the writer, and
// only listens (one socket bound to the nftables notification group, nothing sent: checked with
// strace). It ships with the iptables package the agent runs iptables-save from.
//
// Its socket has the kernel's default receive buffer: a commit of more than a few hundred rules
// (kube-proxy rewriting KUBE-SERVICES, a full restore) overflows it, and it exits with "No buffer
// space available". That is not a failure but a signal, the cheapest there is: something large
// changed, read everything again. Restarting it costs about 3 ms; a second overflow within the
// hold time waits for the next read to restart it (ensureListening), so that a node under
// kube-proxy churn pays one restart per read, not one per sync.
//
// Any other end is a failure: restarted with exponential backoff, reported through the caller.
// stdbuf -oL (coreutils) makes it write each line as it prints it: to a pipe, its output would
// otherwise wait in a 4 KiB stdio buffer.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { CommitReader, type Commit } from './monitor-commits.js';

export const MONITOR_COMMAND: readonly string[] = ['stdbuf', '-oL', 'xtables-monitor', '-e'];

const OVERFLOW = /No buffer space available/;
// NFNLGRP_NFTABLES (include/uapi/linux/netfilter/nfnetlink.h) is group 7: bit 6 of the socket's
// group mask, which /proc/net/netlink prints in hex.
const NFTABLES_GROUP_BIT = 1 << (7 - 1);
const NETLINK_NETFILTER = 12;

export interface MonitorEvents {
  /** A commit seen, with its writer. */
  commit(commit: Commit): void;
  /** Changes may have gone unseen (an overflow, skipped generations, the monitor down): read everything. */
  missed(reason: string): void;
  /** Subscribed: from now on no commit goes unseen, until `missed`. */
  listening(): void;
  /** The monitor died or could not start, other than by overflow: one source failure. */
  failed(message: string): void;
}

export interface MonitorOptions {
  command?: readonly string[];
  /** How long the child may take to subscribe before it counts as failed. */
  readyTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** An overflow this soon after the previous one waits for ensureListening() to restart. */
  overflowHoldMs: number;
  procRoot?: string;
}

type State = 'stopped' | 'starting' | 'listening' | 'held' | 'backoff';

export class XtablesMonitor {
  private child: ChildProcess | undefined;
  private state: State = 'stopped';
  private stopping = false;
  private failures = 0;
  private lastOverflowAt = -Infinity;
  private restartTimer: NodeJS.Timeout | undefined;
  private listeningSince = 0;
  private readyTimedOut = false;
  private readonly waiters = new Set<(listening: boolean) => void>();
  private readonly command: readonly string[];
  private readonly readyTimeoutMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly procRoot: string;

  constructor(
    private readonly events: MonitorEvents,
    private readonly opts: MonitorOptions,
  ) {
    this.command = opts.command ?? MONITOR_COMMAND;
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 5_000;
    this.backoffBaseMs = opts.backoffBaseMs ?? 1_000;
    this.backoffMaxMs = opts.backoffMaxMs ?? 300_000;
    this.procRoot = opts.procRoot ?? '/proc';
  }

  get listening(): boolean {
    return this.state === 'listening';
  }

  /** The child's process id while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the monitor unless it runs or waits for a restart after a failure. */
  start(): void {
    if (this.stopping || this.state === 'starting' || this.state === 'listening' || this.state === 'backoff') return;
    this.spawnChild();
  }

  /**
   * Starts a monitor held after an overflow, and waits until it listens, for at most
   * `timeoutMs`. False when it does not listen by then (failed, in backoff, or stopped).
   */
  ensureListening(timeoutMs: number): Promise<boolean> {
    if (this.state === 'held' || this.state === 'stopped') this.start();
    if (this.state === 'listening') return Promise.resolve(true);
    if (this.state !== 'starting') return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (listening: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve(listening);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      this.waiters.add(done);
    });
  }

  /** Stops the monitor for good and waits for the child to end. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    this.settle(false);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    child.kill('SIGTERM');
    await exited;
  }

  /** Ends the child at once (SIGKILL): the agent is about to exit without waiting. */
  kill(): void {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.child?.kill('SIGKILL');
  }

  private spawnChild(): void {
    clearTimeout(this.restartTimer);
    this.state = 'starting';
    this.readyTimedOut = false;
    const [file, ...args] = this.command;
    const child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    this.child = child;
    const reader = new CommitReader();
    let stderr = '';
    let carry = '';
    let finished = false;
    const finish = (message: string) => {
      if (finished || this.child !== child) return;
      finished = true;
      this.child = undefined;
      this.ended(message, OVERFLOW.test(stderr));
    };
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const lines = (carry + chunk).split('\n');
      carry = lines.pop() ?? '';
      for (const line of lines) {
        const { commit, skipped } = reader.push(line);
        if (skipped) this.events.missed(`generations ${skipped.from}-${skipped.to} unseen`);
        if (commit) this.events.commit(commit);
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    // A command that cannot start emits 'error' and maybe never 'close'.
    child.on('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ENOENT' ? `${file}: command not found` : `${file}: ${err.message}`));
    child.on('close', (code, signal) => finish(describeEnd(code, signal, stderr)));
    if (child.pid !== undefined) void this.waitUntilSubscribed(child);
  }

  private async waitUntilSubscribed(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    while (this.child === child && this.state === 'starting') {
      if (await subscribed(child.pid!, this.procRoot)) {
        if (this.child !== child || this.state !== 'starting') return;
        this.state = 'listening';
        this.listeningSince = Date.now();
        this.events.listening();
        this.settle(true);
        return;
      }
      if (Date.now() > deadline) {
        this.readyTimedOut = true;
        child.kill('SIGKILL');
        return;
      }
      await delay(10);
    }
  }

  private ended(message: string, overflow: boolean): void {
    const wasListening = this.state === 'listening';
    if (this.stopping) {
      this.state = 'stopped';
      return;
    }
    this.settle(false);
    if (this.readyTimedOut) {
      this.readyTimedOut = false;
      message = `${this.command.join(' ')}: not listening within ${this.readyTimeoutMs / 1000} s`;
      overflow = false;
    }
    if (overflow) {
      this.events.missed('overflow');
      const now = Date.now();
      const hold = now - this.lastOverflowAt < this.opts.overflowHoldMs;
      this.lastOverflowAt = now;
      if (hold) this.state = 'held';
      else this.spawnChild();
      return;
    }
    // A monitor that listened for a while before it died starts its backoff afresh.
    if (wasListening && Date.now() - this.listeningSince >= this.backoffMaxMs / 10) this.failures = 0;
    this.failures++;
    this.events.failed(message);
    if (wasListening) this.events.missed('monitor ended');
    this.state = 'backoff';
    const wait = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (this.failures - 1));
    this.restartTimer = setTimeout(() => {
      this.state = 'stopped';
      this.spawnChild();
    }, wait);
    this.restartTimer.unref();
  }

  private settle(listening: boolean): void {
    for (const waiter of [...this.waiters]) waiter(listening);
  }
}

function describeEnd(code: number | null, signal: NodeJS.Signals | null, stderr: string): string {
  const first = stderr.trim().split('\n', 1)[0]?.slice(0, 200);
  return `xtables-monitor: exit ${code ?? signal}${first ? `: ${first}` : ''}`;
}

/**
 * Whether process `pid` has a netfilter netlink socket in the nftables notification group: read
 * from its descriptors and its network namespace's /proc/net/netlink (proc(5)).
 */
export async function subscribed(pid: number, procRoot = '/proc'): Promise<boolean> {
  try {
    const inodes = new Set<string>();
    for (const fd of await readdir(`${procRoot}/${pid}/fd`)) {
      const target = await readlink(`${procRoot}/${pid}/fd/${fd}`).catch(() => '');
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m) inodes.add(m[1]!);
    }
    if (inodes.size === 0) return false;
    return nftablesListeners(await readFile(`${procRoot}/${pid}/net/netlink`, 'utf8')).some((inode) => inodes.has(inode));
  } catch {
    return false; // gone, or not yet there
  }
}

/**
 * The inodes of the netfilter netlink sockets subscribed to nftables notifications, from the text
 * of /proc/net/netlink ("sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode", Groups in hex).
 */
export function nftablesListeners(procNetNetlink: string): string[] {
  const out: string[] = [];
  for (const line of procNetNetlink.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    if (Number(f[1]) === NETLINK_NETFILTER && (parseInt(f[3]!, 16) & NFTABLES_GROUP_BIT) !== 0) out.push(f[9]!);
  }
  return out;
}
