// Machine ID files of the host (design.md section 3; systemd machine-id(5)).
//
// Both files are read under the host root, never the container's own /etc. The D-Bus copy is
// usually a symbolic link to /etc/machine-id; the link's target is an absolute path on the host,
// so it is resolved under the host root too, not followed by the kernel inside the container.
import { lstat, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import type { MachineIdFile } from '../protocol/report.js';

const MACHINE_ID = /^[0-9a-f]{32}$/;
const ALL_ZEROS = /^0{32}$/;
const MAX_LINK_HOPS = 8;

/** Classifies a machine-id file's content, as systemd would read it. */
export function classifyMachineId(content: string): MachineIdFile {
  const value = (content.split('\n', 1)[0] ?? '').replace(/\r$/, '');
  // Golden images should ship the file empty (or blank): systemd then writes a new ID at boot.
  if (content.trim() === '') return { status: 'empty' };
  const shown = value.slice(0, 64);
  // "uninitialized" marks a first boot in progress (systemd >= 247).
  if (value === 'uninitialized') return { status: 'uninitialized', value: shown };
  if (MACHINE_ID.test(value) && !ALL_ZEROS.test(value)) return { status: 'ok', value };
  return { status: 'invalid', value: shown };
}

export interface MachineIdRead {
  file: MachineIdFile;
  error?: string; // the file exists but could not be read
}

/** Reads `<hostRoot>/<file>`, resolving symbolic links inside the host root. */
export async function readMachineIdFile(hostRoot: string, file: string): Promise<MachineIdRead> {
  let current = file;
  let linkTarget: string | undefined;
  for (let hop = 0; hop <= MAX_LINK_HOPS; hop++) {
    const onHost = path.join(hostRoot, current);
    let isLink: boolean;
    try {
      isLink = (await lstat(onHost)).isSymbolicLink();
    } catch (err) {
      return missingOr(err, linkTarget);
    }
    if (isLink) {
      const target = await readlink(onHost);
      linkTarget ??= target; // report the first hop: that is what an admin sees with ls -l
      current = path.isAbsolute(target) ? target : path.join(path.dirname(current), target);
      continue;
    }
    try {
      const content = await readFile(onHost, 'utf8');
      const classified = classifyMachineId(content);
      return { file: linkTarget === undefined ? classified : { ...classified, linkTarget } };
    } catch (err) {
      return missingOr(err, linkTarget);
    }
  }
  return { file: { status: 'invalid', linkTarget }, error: `${file}: more than ${MAX_LINK_HOPS} symbolic links` };
}

function missingOr(err: unknown, linkTarget: string | undefined): MachineIdRead {
  const code = (err as NodeJS.ErrnoException).code;
  const file: MachineIdFile = linkTarget === undefined ? { status: 'missing' } : { status: 'missing', linkTarget };
  if (code === 'ENOENT' || code === 'ENOTDIR') return { file };
  // Unreadable is not the same as missing: say so, and let the finding rest on the error entry.
  return { file, error: (err as Error).message };
}

export const MACHINE_ID_FILES = { etc: '/etc/machine-id', dbus: '/var/lib/dbus/machine-id' } as const;
