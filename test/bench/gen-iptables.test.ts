// The project's own ruleset generator (issue 12, item 15): it makes the committed fixtures again,
// byte for byte, and a ruleset of any size has kube-proxy's shape (one KUBE-SVC chain per service,
// one KUBE-SEP chain per endpoint, each jumped to) with Calico's hooks where the mode puts them.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { IPTABLES_FIXTURES, builtinTargetsOf } from '../support/fixtures.js';
import { generateIptablesRules, parseShape } from './gen-iptables.js';

// As test/fixtures/make-fixtures.sh makes them.
const FIXTURES: [file: string, argv: string][] = [
  ['calico-insert.v4.nft.rules', '--services 5 --endpoints 2 --calico insert'],
  ['calico-append.v4.nft.rules', '--services 5 --endpoints 2 --calico append'],
  ['calico-kube-docker.v4.nft.rules', '--services 200 --endpoints 3 --calico insert'],
  ['foreign-first-append.v4.nft.rules', '--services 5 --endpoints 2 --calico append --other illumio- --other-first'],
  ['foreign-first-insert.v4.nft.rules', '--services 5 --endpoints 2 --calico insert --other acme- --other-first'],
  ['calico-insert.v4.legacy.rules', '--services 5 --endpoints 2 --calico insert'],
];

t.test('makes the committed fixtures again, byte for byte', async (t) => {
  for (const [file, argv] of FIXTURES) {
    t.equal(generateIptablesRules(parseShape(argv.split(' '))), readFileSync(path.join(IPTABLES_FIXTURES, file), 'utf8'), `${file} from ${argv}`);
  }
});

t.test('a ruleset of any size has kube-proxy\'s shape', async (t) => {
  for (const [services, endpoints] of [[0, 3], [1, 1], [300, 3], [5000, 3]] as const) {
    const rules = generateIptablesRules({ services, endpoints, calico: 'insert' });
    const declared = (prefix: string) => new Set(rules.split('\n').filter((l) => l.startsWith(`:${prefix}`)).map((l) => l.slice(1).split(' ')[0]));
    const jumpedTo = (prefix: string) => new Set([...rules.matchAll(new RegExp(`-j (${prefix}\\S+)`, 'g'))].map((m) => m[1]));
    t.equal(declared('KUBE-SVC-').size, services, `${services} services: as many KUBE-SVC chains`);
    t.equal(declared('KUBE-SEP-').size, services * endpoints, `${services} x ${endpoints} KUBE-SEP chains, names unique`);
    t.same(jumpedTo('KUBE-SVC-'), declared('KUBE-SVC-'), 'each service chain is jumped to from KUBE-SERVICES');
    t.same(jumpedTo('KUBE-SEP-'), declared('KUBE-SEP-'), 'each endpoint chain is jumped to');
    // Insert mode: Calico's jump is the first rule of every built-in chain it hooks.
    const targets = builtinTargetsOf(rules);
    for (const chain of ['raw/PREROUTING', 'nat/PREROUTING', 'filter/INPUT', 'filter/FORWARD']) t.match(targets.get(chain)?.[0] ?? '', /^cali-/, `${chain} starts with Calico's hook`);
  }
  const append = builtinTargetsOf(generateIptablesRules({ services: 10, endpoints: 2, calico: 'append' }));
  t.match(append.get('nat/PREROUTING')?.at(-1) ?? '', /^cali-/, 'Append mode: Calico\'s hook is the last rule');
});

t.test('refuses what it does not understand rather than make another ruleset', async (t) => {
  t.throws(() => parseShape(['--services', 'many']), /whole number/);
  t.throws(() => parseShape(['--calico', 'maybe']), /insert, append or none/);
  t.throws(() => parseShape(['--endpoint', '3']), /Unknown option/);
});
