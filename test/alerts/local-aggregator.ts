// The built aggregator as a process on loopback, without a cluster (CLUSTER_VIEW=off) and with
// one shared token, and the reports the alert tests send it: two nodes cloned from one image, a
// healthy one, and an agent with a wrong token.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { AggregatorProcess } from '../support/aggregator-process.js';
import { buildReport, machineIdFor } from '../support/reports.js';

export const TOKEN = 'alerts-test-token';

export interface LocalAggregator {
  aggregator: AggregatorProcess;
  /** host:port, for a scrape target. */
  address: string;
  /** One round of reports: node-a and node-b share a machine ID, node-c is healthy; then one refused (a wrong token). */
  sendRound(): Promise<void>;
}

export async function startLocalAggregator(t: Test): Promise<LocalAggregator> {
  const dir = mkdtempSync(path.join(tmpdir(), 'nodeprep-alerts-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'tokens'), `${TOKEN}\n`);
  const aggregator = await AggregatorProcess.start({ CLUSTER_VIEW: 'off', AUTH_TOKEN_FILE: path.join(dir, 'tokens'), HOME: dir });
  t.teardown(() => aggregator.stop('SIGKILL'));
  const cloned = machineIdFor('golden-image');
  const reports = [buildReport({ name: 'node-a', machineId: cloned }), buildReport({ name: 'node-b', machineId: cloned }), buildReport({ name: 'node-c' })].map((r) => JSON.stringify(r));
  return {
    aggregator,
    address: aggregator.base.replace(/^https?:\/\//, ''),
    async sendRound() {
      for (const body of reports) {
        const res = await aggregator.post('/v1/reports', body, TOKEN);
        if (res.status !== 202) throw new Error(`report refused: ${res.status} ${JSON.stringify(res.body)}`);
      }
      const refused = await aggregator.post('/v1/reports', reports[2]!, 'not-the-token');
      if (refused.status !== 401) throw new Error(`a wrong token was not refused: ${refused.status}`);
    },
  };
}
