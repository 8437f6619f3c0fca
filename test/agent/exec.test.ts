import t from 'tap';
import { runCommand, streamCommand } from '../../agent/exec.js';

t.test('a command that hangs is killed at its time limit, and says so', async (t) => {
  const r = await runCommand('sleep', ['10'], 200);
  t.same(r, { ok: false, message: 'sleep 10: no answer within 0.2 s' });
});

t.test('a missing command and a failing one are told apart', async (t) => {
  t.same(await runCommand('nodeprep-no-such-command', []), { ok: false, message: 'nodeprep-no-such-command: command not found' });
  const failed = await runCommand('sh', ['-c', 'echo "iptables: Permission denied (you must be root)" >&2; exit 4']);
  t.same(failed, { ok: false, message: 'sh -c echo "iptables: Permission denied (you must be root)" >&2; exit 4: exit 4: iptables: Permission denied (you must be root)' });
});

t.test('output arrives in chunks, all of it', async (t) => {
  const chunks: string[] = [];
  const r = await streamCommand('sh', ['-c', 'head -c 1000000 /dev/zero | tr "\\0" x'], (c) => chunks.push(c));
  t.same(r, { ok: true });
  t.ok(chunks.length > 1, `${chunks.length} chunks`);
  t.equal(chunks.join('').length, 1_000_000);
});
