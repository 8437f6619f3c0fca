// Agent in steady state (design.md section 8): `nodeprep-agent run` on the 75,000-line ruleset,
// sending to a bare HTTP server on loopback. Prints its resident memory after it has settled and
// the CPU it spends per sample, and the same for a tiny ruleset as the baseline.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { AGENT, ROOT, makeDump, shebangFlags } from './tools.js';

const SECONDS = 10;
const INTERVAL_S = 0.5;
const CLOCK_TICKS = 100; // USER_HZ on Linux

export async function benchAgent(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-bench-agent-'));
  let received = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      res.writeHead(202).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const big = path.join(dir, 'big.txt');
    writeFileSync(big, makeDump(dir).text);
    const small = path.join(ROOT, 'test/fixtures/iptables/calico-insert.v4.nft.txt');
    console.log(`agent run: ${SECONDS} s at one sample every ${INTERVAL_S} s, sending to a bare HTTP server on loopback`);
    for (const [label, dump] of [['tiny ruleset (baseline)', small], ['75,000-line ruleset', big]] as const) {
      const m = await steadyState(url, dump, dir);
      console.log(`  ${label.padEnd(26)} RSS ${m.rssMiB.toFixed(1)} MiB (target < 64), CPU ${m.cpuMsPerSample.toFixed(1)} ms per sample`);
    }
    console.log(`  reports received: ${received} (sent on change and on the 1 s heartbeat)`);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function steadyState(url: string, dump: string, dir: string): Promise<{ rssMiB: number; cpuMsPerSample: number }> {
  const health = path.join(dir, 'alive');
  const child = spawn(process.execPath, [...shebangFlags(AGENT), AGENT, 'run', '--node-name', 'bench', '--host-root', dir, '--from-dump', `ipv4/nft=${dump}`,
    '--aggregator-url', url, '--sample-interval', String(INTERVAL_S), '--heartbeat-interval', '1', '--health-file', health, '--log-level', 'warn'], { stdio: 'ignore' });
  const cpuTicks = () => {
    const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  };
  // Skip start-up: measure from the second second on.
  await new Promise((r) => setTimeout(r, 1000));
  const ticks0 = cpuTicks();
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const ticks = cpuTicks() - ticks0;
  const samples = (Date.now() - t0) / 1000 / INTERVAL_S;
  const rssKiB = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]);
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
  return { rssMiB: rssKiB / 1024, cpuMsPerSample: ((ticks / CLOCK_TICKS) * 1000) / samples };
}
