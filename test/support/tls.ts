// A CA made with the real openssl in a temporary folder, and the server certificates it signs,
// for tests of HTTPS between the agent and an aggregator on loopback.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestCa {
  caFile: string;
  /** A server certificate for `san`; `expired`: its validity ended before it began. */
  server(san?: string, options?: { expired?: boolean }): { key: Buffer; cert: Buffer };
}

export function testCa(t: { teardown: (fn: () => void) => void }): TestCa {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-ca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=nodeprep test CA');
  let n = 0;
  return {
    caFile: path.join(dir, 'ca.crt'),
    server(san = 'IP:127.0.0.1', { expired = false } = {}) {
      const name = `srv${n++}`;
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=nodeprep test server');
      writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
      const sign = (validity: string[]) =>
        ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-extfile', `${name}.ext`, ...validity);
      if (!expired) sign(['-days', '1']);
      else {
        // OpenSSL 3.0 takes a negative -days; later ones have -not_before/-not_after.
        try {
          sign(['-days', '-1']);
        } catch {
          sign(['-not_before', '20200101000000Z', '-not_after', '20200102000000Z']);
        }
      }
      return { key: readFileSync(path.join(dir, `${name}.key`)), cert: readFileSync(path.join(dir, `${name}.crt`)) };
    },
  };
}
