// Property tests: whatever happens to a real dump on its way (cut anywhere, bytes changed), the
// parser neither throws nor vouches for a table it did not see whole.
import fc from 'fast-check';
import t from 'tap';
import { IptablesSaveParser, parseIptablesSave } from '../../agent/iptables-save.js';
import { IptablesRuleset } from '../../protocol/report.js';
import { realDumps } from '../support/fixtures.js';

const dumps = realDumps().filter((d) => d.dump.length < 50_000);
const RUNS = 300;

function fitsProtocol(text: string) {
  const parsed = parseIptablesSave(text);
  return { parsed, ok: IptablesRuleset.safeParse({ family: 'ipv4', backend: 'unknown', source: 'dump', ...parsed }).success };
}

t.test('a dump cut anywhere: no table it reports complete differs from the whole dump', async (t) => {
  for (const d of dumps) {
    const whole = new Map(parseIptablesSave(d.dump).tables.map((x) => [x.name, x]));
    let checkedComplete = 0;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: d.dump.length - 1 }), (cut) => {
        const { parsed, ok } = fitsProtocol(d.dump.slice(0, cut));
        if (!ok) return false;
        for (const table of parsed.tables) {
          if (!table.complete) continue;
          checkedComplete++;
          // A table reported complete must be the whole table, rule for rule.
          if (JSON.stringify(table) !== JSON.stringify(whole.get(table.name))) return false;
        }
        // A cut dump is never "ok" unless the cut fell after the last COMMIT's line.
        if (parsed.verdict === 'ok' && d.dump.slice(cut).includes('COMMIT')) return false;
        return true;
      }),
      { numRuns: RUNS, seed: 42 },
    );
    t.ok(checkedComplete > 0, `${d.name}: some cuts left whole tables to compare`);
  }
});

t.test('bytes changed at random: the parser answers, within the protocol', async (t) => {
  for (const d of dumps) {
    const bytes = Buffer.from(d.dump, 'utf8');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(bytes.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 20 }), (edits) => {
        const mutated = Buffer.from(bytes);
        for (const [at, value] of edits) mutated[at] = value;
        return fitsProtocol(mutated.toString('utf8')).ok;
      }),
      { numRuns: RUNS, seed: 7 },
    );
    t.pass(`${d.name}: ${RUNS} mutated copies parsed without a throw`);
  }
});

t.test('random text of any kind: never a throw, never an "ok" verdict with no table', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 2000 }), (text) => {
      const { parsed, ok } = fitsProtocol(text);
      return ok && !(parsed.verdict === 'ok' && parsed.tables.length === 0);
    }),
    { numRuns: 2000, seed: 1 },
  );
  t.pass('2000 random strings');
});

t.test('fed in chunks of any size, the parser gives what it gives on the whole text', async (t) => {
  for (const d of dumps.slice(0, 4)) {
    const whole = JSON.stringify(parseIptablesSave(d.dump));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 4096 }), { minLength: 1, maxLength: 64 }), (sizes) => {
        const parser = new IptablesSaveParser();
        let at = 0;
        for (let i = 0; at < d.dump.length; i++) {
          const size = sizes[i % sizes.length]!;
          parser.push(d.dump.slice(at, at + size));
          at += size;
        }
        return JSON.stringify(parser.end()) === whole;
      }),
      { numRuns: 100, seed: 3 },
    );
    t.pass(`${d.name}: 100 chunkings`);
  }
});
