// The protocol's constants, apart from its zod schemas (report.ts) so that the agent, which
// only builds reports, does not load zod: the agent's memory budget is 64 MiB, and Node.js
// alone takes 40 of it.

export const SCHEMA_VERSION = 2;
export const MAX_REPORT_BYTES = 256 * 1024;

export const LIMITS = {
  name: 253, // a Kubernetes node name is a DNS subdomain
  chainName: 64,
  comment: 48, // the agent cuts longer comments; only the first `--comment` is kept
  rulesPerChain: 64, // a longer chain keeps its head and its tail (see omittedAfter)
  rulesPerReport: 640,
  userChainFamilies: 20,
  familyPrefix: 16,
  userChainNamesPerReport: 256,
  tablesPerEntry: 6,
  iptablesEntries: 6, // ipv4/ipv6 x legacy/nft/unknown
  nftTables: 64,
  errors: 32,
  message: 256,
  headChanges: 32,
} as const;
