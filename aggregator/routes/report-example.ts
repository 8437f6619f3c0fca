// The example report GET /openapi.json shows for POST /v1/reports: a small, real-shaped report
// (Calico in Append mode on one nft ruleset). The contract test posts it (202), and the fuzzer
// starts from it.
import { SCHEMA_VERSION } from '../../protocol/limits.js';
import type { NodeReport } from '../../protocol/report.js';

export const REPORT_EXAMPLE = {
  schemaVersion: SCHEMA_VERSION,
  agent: { version: '0.1.0' },
  node: { name: 'worker-1' },
  collectedAt: '2026-01-01T00:00:00.000Z',
  machineId: {
    etc: { status: 'ok', appId: 'fd8beb38b0b3b008322ea4ba31a713ac' },
    dbus: { status: 'ok', appId: 'fd8beb38b0b3b008322ea4ba31a713ac', linkTarget: '/etc/machine-id' },
  },
  iptables: [
    {
      family: 'ipv4',
      backend: 'nft',
      source: 'host',
      verdict: 'ok',
      ruleCount: 3,
      tables: [
        {
          name: 'filter',
          complete: true,
          builtinChains: [
            {
              name: 'INPUT',
              policy: 'ACCEPT',
              ruleCount: 2,
              rules: [
                { target: 'KUBE-FIREWALL' },
                { target: 'cali-INPUT', comment: 'cali:Cz_u1IQiXIMmKD4c' },
              ],
            },
            { name: 'FORWARD', policy: 'ACCEPT', ruleCount: 1, rules: [{ target: 'cali-FORWARD', comment: 'cali:wUHhoiAYhphO9Mso' }] },
          ],
          userChains: { families: { 'KUBE-SVC-': 20, 'KUBE-SEP-': 60 }, names: ['cali-INPUT', 'cali-FORWARD', 'KUBE-FIREWALL'] },
        },
      ],
    },
  ],
  nftTables: [{ family: 'ip', name: 'filter' }],
  illumio: { hostDataDir: false, serverVen: false },
  errors: [],
} satisfies NodeReport;
