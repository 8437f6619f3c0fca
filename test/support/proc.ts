// A process's resident memory and CPU, read from /proc (proc(5)): for the benchmarks and the
// scale test, which measure the programs as separate processes.
import { readFileSync } from 'node:fs';

export const CLOCK_TICKS_PER_S = 100; // USER_HZ on Linux

export interface ProcStat {
  ppid: number;
  /** CPU of the process itself, in clock ticks. */
  own: number;
  /** CPU of the children it has waited for (cutime + cstime), in clock ticks. */
  children: number;
}

/** /proc/<pid>/stat, or undefined once the process is gone (proc(5)). */
export function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: state is [0].
    const f = text.slice(text.lastIndexOf(') ') + 2).split(' ').map(Number);
    return { ppid: f[1]!, own: f[11]! + f[12]!, children: f[13]! + f[14]! };
  } catch {
    return undefined;
  }
}

/** VmRSS and VmHWM of a process in KiB, or undefined once it is gone. */
export function procMemory(pid: number): { rssKiB: number; hwmKiB: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(text)?.[1] ?? 0);
    return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Resident memory (MiB) and CPU seconds so far of a process that is still running. */
export function processUsage(pid: number): { rssMiB: number; cpuSeconds: number } {
  return { rssMiB: (procMemory(pid)?.rssKiB ?? 0) / 1024, cpuSeconds: (procStat(pid)?.own ?? 0) / CLOCK_TICKS_PER_S };
}
