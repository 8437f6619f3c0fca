import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { MACHINE_ID_FILES, classifyMachineId, readMachineIdFile } from '../../agent/machine-id.js';
import { NODEPREP_APP_ID, appSpecificMachineId } from '../../protocol/machine-id.js';
import { HOST_FIXTURES, expected } from '../support/fixtures.js';

t.test('classifyMachineId follows machine-id(5)', async (t) => {
  const cases: [string, string][] = [
    ['4b1d8e0c6f2a4c1e9d3b7a5f0e2c8d61\n', 'ok'],
    ['4b1d8e0c6f2a4c1e9d3b7a5f0e2c8d61', 'ok'],
    ['', 'empty'],
    ['\n', 'empty'],
    ['uninitialized\n', 'uninitialized'],
    ['00000000000000000000000000000000\n', 'invalid'],
    ['4B1D8E0C6F2A4C1E9D3B7A5F0E2C8D61\n', 'invalid'],
    ['4b1d8e0c-6f2a-4c1e-9d3b-7a5f0e2c8d61\n', 'invalid'],
    ['4b1d8e0c6f2a4c1e9d3b7a5f0e2c8d6\n', 'invalid'],
  ];
  for (const [content, status] of cases) t.equal(classifyMachineId(content).status, status, JSON.stringify(content));
});

t.test('the raw ID never appears in what the agent reports', async (t) => {
  const raw = '4b1d8e0c6f2a4c1e9d3b7a5f0e2c8d61';
  const ok = classifyMachineId(`${raw}\n`);
  t.equal(ok.appId, appSpecificMachineId(raw));
  t.match(ok.appId, /^[0-9a-f]{32}$/);
  t.not(ok.appId, raw);
  // An invalid ID may be a real one in the wrong form: described, never repeated.
  const upper = classifyMachineId(`${raw.toUpperCase()}\n`);
  t.same(upper, { status: 'invalid', detail: 'uppercase hex digits (systemd writes lowercase)' });
  t.same(classifyMachineId('0'.repeat(32)), { status: 'invalid', detail: 'all zeros' });
  t.match(classifyMachineId('x'.repeat(500)).detail, /^500 characters/);
  for (const r of [ok, upper]) t.notOk(JSON.stringify(r).toLowerCase().includes(raw), JSON.stringify(r));
});

// systemd-id128 (Debian package systemd) computes sd_id128_get_machine_app_specific() from
// /etc/machine-id; a private mount namespace shows it other IDs (unshare and mount need root).
function systemdAppId(dir: string, raw: string): string {
  const file = path.join(dir, `id-${raw}`);
  writeFileSync(file, `${raw}\n`);
  const script = `mount --bind "$1" /etc/machine-id && systemd-id128 machine-id --app-specific=${NODEPREP_APP_ID}`;
  return execFileSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', file], { encoding: 'utf8' }).trim();
}
const whySkipSystemd = process.getuid?.() !== 0 ? 'needs root (unshare --mount)' : spawnSync('systemd-id128', ['--help']).status !== 0 ? 'systemd-id128 is not installed (Debian package systemd)' : false;
t.test('the application-specific ID is the one systemd derives', { skip: whySkipSystemd }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-appid-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const raw of ['4b1d8e0c6f2a4c1e9d3b7a5f0e2c8d61', '00000000000000000000000000000001', 'ffffffffffffffffffffffffffffffff']) {
    t.equal(appSpecificMachineId(raw), systemdAppId(dir, raw), `systemd-id128 agrees for ${raw}`);
  }
});

t.test('host fixtures give the statuses written in expected.json', async (t) => {
  for (const [host, want] of Object.entries(expected.hosts)) {
    const root = path.join(HOST_FIXTURES, host);
    const etc = await readMachineIdFile(root, MACHINE_ID_FILES.etc);
    const dbus = await readMachineIdFile(root, MACHINE_ID_FILES.dbus);
    t.equal(etc.file.status, want.etc, `${host}: /etc/machine-id`);
    t.equal(dbus.file.status, want.dbus, `${host}: D-Bus copy`);
    t.equal(dbus.file.linkTarget, want.dbusLinkTarget, `${host}: D-Bus link`);
    t.equal(etc.error, undefined);
  }
});

t.test('the D-Bus link is followed inside the host root, not in the container', async (t) => {
  const root = path.join(HOST_FIXTURES, 'unique');
  const dbus = await readMachineIdFile(root, MACHINE_ID_FILES.dbus);
  const etc = await readMachineIdFile(root, MACHINE_ID_FILES.etc);
  t.ok(etc.file.appId, 'a valid ID');
  t.equal(dbus.file.appId, etc.file.appId);
});

t.test('links resolve as in a chroot: ".." and absolute targets stay inside the host root', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-chroot-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'etc'));
  mkdirSync(path.join(root, 'var/lib/dbus'), { recursive: true });
  writeFileSync(path.join(root, 'etc/machine-id'), '4b1d8e0c6f2a4c1e9d3b7a5f0e2c8d61\n');
  // Climbs far above the host root: in a chroot that ends at /etc/machine-id of the root.
  symlinkSync('../../../../../../../../etc/machine-id', path.join(root, 'var/lib/dbus/machine-id'));
  const climbing = await readMachineIdFile(root, MACHINE_ID_FILES.dbus);
  t.equal(climbing.file.status, 'ok');
  t.equal(climbing.file.appId, appSpecificMachineId('4b1d8e0c6f2a4c1e9d3b7a5f0e2c8d61'), 'the host root\'s file, not the container\'s');
  t.equal(climbing.file.linkTarget, '../../../../../../../../etc/machine-id');
  // A link in a directory of the path, absolute: resolved under the host root as well.
  rmSync(path.join(root, 'var/lib/dbus'), { recursive: true });
  mkdirSync(path.join(root, 'srv/dbus'), { recursive: true });
  writeFileSync(path.join(root, 'srv/dbus/machine-id'), 'uninitialized\n');
  symlinkSync('/srv/dbus', path.join(root, 'var/lib/dbus'));
  t.equal((await readMachineIdFile(root, MACHINE_ID_FILES.dbus)).file.status, 'uninitialized');
  // A link to a file that exists in the container but not under the host root: missing.
  rmSync(path.join(root, 'var/lib/dbus'));
  mkdirSync(path.join(root, 'var/lib/dbus'));
  symlinkSync('/../../proc/self/status', path.join(root, 'var/lib/dbus/machine-id'));
  t.same((await readMachineIdFile(root, MACHINE_ID_FILES.dbus)).file, { status: 'missing', linkTarget: '/../../proc/self/status' });
});

t.test('a dangling link is missing, with its target; an unreadable file is an error', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-mid-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'var/lib/dbus'), { recursive: true });
  mkdirSync(path.join(root, 'etc'));
  symlinkSync('/etc/nothing-here', path.join(root, 'var/lib/dbus/machine-id'));
  const dbus = await readMachineIdFile(root, MACHINE_ID_FILES.dbus);
  t.same(dbus.file, { status: 'missing', linkTarget: '/etc/nothing-here' });
  // A directory where the file should be: there, but no machine ID.
  mkdirSync(path.join(root, 'etc/machine-id'));
  const etc = await readMachineIdFile(root, MACHINE_ID_FILES.etc);
  t.same(etc.file, { status: 'invalid', detail: 'not a regular file' });
  // Link loops end.
  symlinkSync('/etc/b', path.join(root, 'etc/a'));
  symlinkSync('/etc/a', path.join(root, 'etc/b'));
  const loop = await readMachineIdFile(root, '/etc/a');
  t.match(loop.error, /symbolic links/);
  // A FIFO in the file's place: not a regular file, and the read does not hang.
  execFileSync('mkfifo', [path.join(root, 'etc/fifo')]);
  t.same((await readMachineIdFile(root, '/etc/fifo')).file, { status: 'invalid', detail: 'not a regular file' });
  // Unreadable: only a process without CAP_DAC_OVERRIDE is refused, so test as another user.
  writeFileSync(path.join(root, 'etc/locked'), '4b1d8e0c6f2a4c1e9d3b7a5f0e2c8d61\n');
  chmodSync(path.join(root, 'etc/locked'), 0);
  if (process.getuid?.() === 0) {
    t.equal((await readMachineIdFile(root, '/etc/locked')).file.status, 'ok', 'root reads it anyway');
  } else {
    const locked = await readMachineIdFile(root, '/etc/locked');
    t.equal(locked.file.status, 'missing');
    t.match(locked.error, /EACCES/, 'an unreadable file is an error entry, not a silent "missing"');
  }
});
