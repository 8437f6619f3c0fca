// Runs a read-only command with a time limit and says plainly why it failed.
import { execFile } from 'node:child_process';

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
