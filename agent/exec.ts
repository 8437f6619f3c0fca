// Runs a read-only command with a time limit and says plainly why it failed.
import { spawn, type ChildProcess } from 'node:child_process';

export const COMMAND_TIMEOUT_MS = 5_000;

// The commands still running, so that an agent forced to exit takes none of them with it.
const running = new Set<ChildProcess>();

/** Kills every command still running (SIGKILL): the agent is about to exit without waiting. */
export function killRunningCommands(): void {
  for (const child of running) child.kill('SIGKILL');
}

export type CommandResult = { ok: true; stdout: string } | { ok: false; message: string };

/** Runs a read-only command with a time limit and returns its output, for small outputs. */
export async function runCommand(file: string, args: string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<CommandResult> {
  let stdout = '';
  const result = await streamCommand(file, args, (chunk) => (stdout += chunk), timeoutMs);
  return result.ok ? { ok: true, stdout } : result;
}

function firstLine(s: string): string {
  return s.trim().split('\n', 1)[0]?.slice(0, 300) ?? '';
}

/**
 * Runs a read-only command and hands its stdout to `onChunk` as it arrives, so that a large
 * output is never held whole. Fails after `timeoutMs`, and says why a command failed.
 */
export function streamCommand(file: string, args: string[], onChunk: (chunk: string) => void, timeoutMs = COMMAND_TIMEOUT_MS): Promise<{ ok: true } | { ok: false; message: string }> {
  return new Promise((resolve) => {
    const what = [file, ...args].join(' ');
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    running.add(child);
    const forget = () => running.delete(child);
    child.on('exit', forget);
    child.on('error', forget); // never started: no 'exit'
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', onChunk);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT') resolve({ ok: false, message: `${file}: command not found` });
      else if (err.code === 'EACCES') resolve({ ok: false, message: `${file}: permission denied` });
      else resolve({ ok: false, message: `${what}: ${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) resolve({ ok: false, message: `${what}: no answer within ${timeoutMs / 1000} s` });
      else if (code === 0) resolve({ ok: true });
      else resolve({ ok: false, message: `${what}: exit ${code ?? signal}: ${firstLine(stderr) || 'no message'}` });
    });
  });
}
