// Waiting on processes and conditions in tests: bounded, so that a broken program fails its test
// instead of hanging it, and polled, so that no verdict rests on how fast this machine is.
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

/** Waits until `ready()`, for at most `ms`. */
export async function until(what: string, ready: () => boolean, ms = 15_000): Promise<void> {
  for (const started = Date.now(); !ready(); await delay(10)) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms / 1000} s`);
  }
}

/** Whether a process runs (a zombie, ended but not yet reaped, does not). */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
