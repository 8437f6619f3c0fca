import { mkdtempSync, rmSync, symlinkSync, mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { MACHINE_ID_FILES, classifyMachineId, readMachineIdFile } from '../../agent/machine-id.js';
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
  t.equal(classifyMachineId('x'.repeat(500)).value?.length, 64, 'a long value is cut for the report');
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
  t.equal(dbus.file.value, etc.file.value);
});

t.test('a dangling link is missing, with its target; an unreadable file is an error', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-mid-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'var/lib/dbus'), { recursive: true });
  mkdirSync(path.join(root, 'etc'));
  symlinkSync('/etc/nothing-here', path.join(root, 'var/lib/dbus/machine-id'));
  const dbus = await readMachineIdFile(root, MACHINE_ID_FILES.dbus);
  t.same(dbus.file, { status: 'missing', linkTarget: '/etc/nothing-here' });
  // A directory where the file should be: not missing, not readable either.
  mkdirSync(path.join(root, 'etc/machine-id'));
  const etc = await readMachineIdFile(root, MACHINE_ID_FILES.etc);
  t.equal(etc.file.status, 'missing');
  t.match(etc.error, /EISDIR/);
  // Link loops end.
  symlinkSync('/etc/b', path.join(root, 'etc/a'));
  symlinkSync('/etc/a', path.join(root, 'etc/b'));
  const loop = await readMachineIdFile(root, '/etc/a');
  t.match(loop.error, /symbolic links/);
  writeFileSync(path.join(root, 'etc/locked'), 'x');
  chmodSync(path.join(root, 'etc/locked'), 0);
});
