// Runs a read-only command with a time limit and says plainly why it failed.
import { execFile, spawn } from 'node:child_process';

export const COMMAND_TIMEOUT_MS = 5_000;
// A kube-proxy node with 5,000 services prints ~7.5 MB; leave room for far bigger ones.
const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;

export type CommandResult = { ok: true; stdout: string; stderr: string } | { ok: false; message: string };

export function runCommand(file: string, args: string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8', windowsHide: true },
      (err, stdout, stderr) => {
        if (!err) return resolve({ ok: true, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string; code?: string | number };
        const what = [file, ...args].join(' ');
        if (e.code === 'ENOENT') return resolve({ ok: false, message: `${file}: command not found` });
        if (e.code === 'EACCES') return resolve({ ok: false, message: `${file}: permission denied` });
        if (e.killed || e.signal === 'SIGKILL') return resolve({ ok: false, message: `${what}: no answer within ${timeoutMs / 1000} s` });
        if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') return resolve({ ok: false, message: `${what}: output larger than ${MAX_OUTPUT_BYTES} bytes` });
        const detail = firstLine(stderr) || e.message;
        resolve({ ok: false, message: `${what}: exit ${e.code ?? e.signal}: ${detail}` });
      },
    );
  });
}

function firstLine(s: string): string {
  return s.trim().split('\n', 1)[0]?.slice(0, 300) ?? '';
}

/**
 * Runs a read-only command and hands its stdout to `onChunk` as it arrives, so that a large
 * output is never held whole. The same time limit and error messages as runCommand.
 */
export function streamCommand(file: string, args: string[], onChunk: (chunk: string) => void, timeoutMs = COMMAND_TIMEOUT_MS): Promise<{ ok: true } | { ok: false; message: string }> {
  return new Promise((resolve) => {
    const what = [file, ...args].join(' ');
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
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
