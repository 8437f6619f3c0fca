// Machine ID files of the host (design.md section 3; systemd machine-id(5)).
//
// Both files are read under the host root, never the container's own /etc. Symbolic links are
// resolved the way a chroot into the host root would resolve them, one path component at a time:
// an absolute target starts again at the host root, and ".." stops there. The D-Bus copy is
// usually a link to /etc/machine-id; a link that climbs out (`../../../../etc/hostname`) still
// ends inside the host root, never on the container's files.
//
// What leaves the node is the application-specific ID (protocol/machine-id.ts), never the raw one.
import { constants } from 'node:fs';
import { lstat, open, readlink } from 'node:fs/promises';
import path from 'node:path';
import { appSpecificMachineId } from '../protocol/machine-id.js';
import type { MachineIdFile } from '../protocol/report.js';

const MACHINE_ID = /^[0-9a-f]{32}$/;
// The kernel gives up after 40 links in one lookup (path_resolution(7)).
const MAX_LINKS = 40;
// A machine-id file is 33 bytes; read a little more to tell "too long" from "cut".
const READ_BYTES = 4096;

/** Classifies a machine-id file's content, as systemd would read it. */
export function classifyMachineId(content: string): MachineIdFile {
  const value = (content.split('\n', 1)[0] ?? '').replace(/\r$/, '');
  // Golden images should ship the file empty (or blank): systemd then writes a new ID at boot.
  if (content.trim() === '') return { status: 'empty' };
  // "uninitialized" marks a first boot in progress (systemd >= 247).
  if (value === 'uninitialized') return { status: 'uninitialized' };
  if (MACHINE_ID.test(value)) {
    const appId = appSpecificMachineId(value);
    return appId ? { status: 'ok', appId } : { status: 'invalid', detail: 'all zeros' };
  }
  return { status: 'invalid', detail: describeInvalid(value) };
}

/** What is wrong with an ID, without repeating it: it may be a real ID in the wrong form. */
function describeInvalid(value: string): string {
  if (/^[0-9a-fA-F]{32}$/.test(value)) return 'uppercase hex digits (systemd writes lowercase)';
  if (/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(value)) return 'a UUID with dashes (systemd writes 32 hex digits without dashes)';
  if (value.trim() !== value) return 'leading or trailing white space';
  if (!/^[0-9a-fA-F]*$/.test(value)) return `${value.length} characters, not all hex digits`;
  return `${value.length} hex digits, expected 32`;
}

export interface MachineIdRead {
  file: MachineIdFile;
  error?: string; // the file exists but could not be read
}

type Resolved = { hostPath: string; linkTarget?: string } | { missing: true; linkTarget?: string } | { error: string; linkTarget?: string };

/**
 * Resolves `file` (an absolute path on the host) to a path under `hostRoot` with no symbolic
 * link in it, as a chroot into `hostRoot` would. `linkTarget` is the target of the file's own
 * link, what `ls -l` shows an admin.
 */
export async function resolveInHostRoot(hostRoot: string, file: string): Promise<Resolved> {
  let done: string[] = [];
  let todo = file.split('/').filter((p) => p !== '');
  let links = 0;
  let linkTarget: string | undefined;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop(); // at the root, ".." is the root
      continue;
    }
    const next = [...done, part];
    let isLink: boolean;
    try {
      isLink = (await lstat(path.join(hostRoot, ...next))).isSymbolicLink();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return { missing: true, linkTarget };
      return { error: (err as Error).message, linkTarget };
    }
    if (!isLink) {
      done = next;
      continue;
    }
    if (++links > MAX_LINKS) return { error: `${file}: more than ${MAX_LINKS} symbolic links`, linkTarget };
    const target = await readlink(path.join(hostRoot, ...next));
    if (todo.length === 0) linkTarget ??= target;
    todo = [...target.split('/').filter((p) => p !== ''), ...todo];
    if (target.startsWith('/')) done = [];
  }
  return { hostPath: path.join(hostRoot, ...done), linkTarget };
}

/** Reads `<hostRoot>/<file>`, resolving symbolic links inside the host root. */
export async function readMachineIdFile(hostRoot: string, file: string): Promise<MachineIdRead> {
  const resolved = await resolveInHostRoot(hostRoot, file);
  const withLink = (f: MachineIdFile): MachineIdFile => (resolved.linkTarget === undefined ? f : { ...f, linkTarget: resolved.linkTarget });
  if ('missing' in resolved) return { file: withLink({ status: 'missing' }) };
  // Unreadable is not the same as missing: say so, and let the finding rest on the error entry.
  if ('error' in resolved) return { file: withLink({ status: 'missing' }), error: resolved.error };
  try {
    // O_NOFOLLOW: a link swapped in after resolving must not be followed in the container.
    // O_NONBLOCK: a FIFO put in the file's place must not hang the sample.
    const handle = await open(resolved.hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      if (!(await handle.stat()).isFile()) return { file: withLink({ status: 'invalid', detail: 'not a regular file' }) };
      const buffer = Buffer.alloc(READ_BYTES);
      const { bytesRead } = await handle.read(buffer, 0, READ_BYTES, 0);
      return { file: withLink(classifyMachineId(buffer.subarray(0, bytesRead).toString('utf8'))) };
    } finally {
      await handle.close();
    }
  } catch (err) {
    return { file: withLink({ status: 'missing' }), error: (err as Error).message };
  }
}

export const MACHINE_ID_FILES = { etc: '/etc/machine-id', dbus: '/var/lib/dbus/machine-id' } as const;
