// The nf_tables guard (agent/nf-tables.ts): the decision from the files' text, and the reads.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { kallsymsLineBuiltin, nfTablesPresent, nfTablesState, readNfTablesState } from '../../agent/nf-tables.js';
import { FIXTURES } from '../support/fixtures.js';

const DIR = path.join(FIXTURES, 'kernel-modules');
const fixture = (name: string) => readFileSync(path.join(DIR, name), 'utf8');
const NONE = path.join(DIR, 'no-such-file');

t.test('decides from the files: loaded, built in, or absent', async (t) => {
  t.equal(nfTablesState({ procModules: fixture('proc-modules-nf-tables.txt'), sysModuleExists: false }), 'loaded');
  // A module whose name starts with nf_tables is not nf_tables; ip_tables alone is legacy.
  t.equal(nfTablesState({ procModules: fixture('proc-modules-legacy-only.txt'), sysModuleExists: false }), 'absent');
  t.equal(nfTablesState({ procModules: fixture('proc-modules-legacy-only.txt'), modulesBuiltin: fixture('modules.builtin-nf-tables'), sysModuleExists: false }), 'built-in');
  // nf_tables_offload.ko is not nf_tables.ko.
  t.equal(nfTablesState({ procModules: fixture('proc-modules-legacy-only.txt'), modulesBuiltin: fixture('modules.builtin-without'), sysModuleExists: false }), 'absent');
  t.equal(nfTablesState({ procModules: fixture('proc-modules-legacy-only.txt'), sysModuleExists: true }), 'built-in');
  t.equal(nfTablesState({ procModules: '', sysModuleExists: false }), 'absent');
});

t.test('no /proc/modules is a kernel that cannot load modules; an unreadable one is absent', async (t) => {
  t.equal(nfTablesState({ procModules: 'missing', sysModuleExists: false }), 'no-module-loading');
  t.equal(nfTablesState({ procModules: 'unreadable', sysModuleExists: false }), 'absent');
  t.equal(nfTablesState({ procModules: 'unreadable', modulesBuiltin: fixture('modules.builtin-nf-tables'), sysModuleExists: false }), 'built-in');
  t.equal(nfTablesPresent('absent'), false);
  for (const s of ['loaded', 'built-in', 'no-module-loading'] as const) t.equal(nfTablesPresent(s), true, s);
});

t.test('reads the files where it is told to', async (t) => {
  const paths = (procModules: string, modulesBuiltin = NONE, sysModule = NONE, kallsyms = NONE) => ({ procModules, modulesBuiltin, sysModule, kallsyms });
  t.equal(await readNfTablesState(paths(path.join(DIR, 'proc-modules-nf-tables.txt'))), 'loaded');
  t.equal(await readNfTablesState(paths(path.join(DIR, 'proc-modules-legacy-only.txt'))), 'absent');
  t.equal(await readNfTablesState(paths(path.join(DIR, 'proc-modules-legacy-only.txt'), path.join(DIR, 'modules.builtin-nf-tables'))), 'built-in');
  t.equal(await readNfTablesState(paths(path.join(DIR, 'proc-modules-legacy-only.txt'), NONE, DIR)), 'built-in'); // an existing /sys/module/nf_tables
  t.equal(await readNfTablesState(paths(NONE)), 'no-module-loading');
  t.equal(await readNfTablesState(paths(DIR)), 'absent'); // a directory: readable as no file is
});

t.test('built in, told by kallsyms where nothing else tells: a symbol of nf_tables without a module suffix', async (t) => {
  const legacy = path.join(DIR, 'proc-modules-legacy-only.txt');
  const at = (kallsyms: string) => ({ procModules: legacy, modulesBuiltin: NONE, sysModule: NONE, kallsyms });
  t.equal(await readNfTablesState(at(path.join(DIR, 'kallsyms-nf-tables-builtin'))), 'built-in');
  // The same symbol from the module (loaded, then unloaded: kallsyms is read once) or a longer name: not built in.
  t.equal(await readNfTablesState(at(path.join(DIR, 'kallsyms-nf-tables-module'))), 'absent');
  t.equal(await readNfTablesState(at(NONE)), 'absent', 'no kallsyms: absent');
  t.ok(kallsymsLineBuiltin('ffffffffa0000000 T nft_register_chain_type'));
  t.notOk(kallsymsLineBuiltin('ffffffffa0000000 T nft_register_chain_type\t[nf_tables]'));
  t.notOk(kallsymsLineBuiltin('ffffffffa0000000 T nft_register_chain_type_x'));
  t.equal(nfTablesState({ procModules: fixture('proc-modules-legacy-only.txt'), sysModuleExists: false, kallsymsBuiltin: true }), 'built-in');
  t.equal(nfTablesState({ procModules: fixture('proc-modules-legacy-only.txt'), sysModuleExists: false, kallsymsBuiltin: false }), 'absent');
});
