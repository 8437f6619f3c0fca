// The protocol's constants, apart from its zod schemas (report.ts) so that the agent, which
// only builds reports, does not load zod: the agent's memory budget is 64 MiB, and Node.js
// alone takes 40 of it.

export const SCHEMA_VERSION = 2;
export const MAX_REPORT_BYTES = 256 * 1024;

// Sized so that the largest report the schema admits, every string at full length in 3-byte
// characters (text.ts), stays within MAX_REPORT_BYTES (test/agent/protocol.test.ts prints it).
// Built-in chain rules are most of it: 266 bytes each at worst.
export const LIMITS = {
  name: 253, // a Kubernetes node name is a DNS subdomain
  chainName: 32, // iptables' own limit is 28 (XT_EXTENSION_MAXNAMELEN, 29 with the NUL)
  comment: 32, // the first `--comment` only, cut: Calico's are 21 ("cali:" and a 16-character hash)
  rulesPerChain: 64, // a longer chain keeps its head and its tail (see omittedAfter)
  rulesPerReport: 384, // a busy node has ~70 per ruleset; the agent cuts long chains to fit
  userChainFamilies: 20,
  familyPrefix: 16, // the agent's own prefixes (iptables-save.ts CHAIN_FAMILIES), printable ASCII
  userChainNamesPerReport: 256,
  tablesPerEntry: 5, // iptables has five: raw, mangle, nat, filter, security
  iptablesEntries: 6, // ipv4/ipv6 x legacy/nft/unknown
  nftTables: 64,
  errors: 16, // one per source: two machine-id files, Illumio, four saves, nft, and dumps
  message: 256,
  linkTarget: 1024, // the D-Bus copy's link is "/etc/machine-id"; a longer one is cut
  headChanges: 32,
  processName: 16, // the kernel's comm: TASK_COMM_LEN is 16 with the NUL
  // nft base chains of tables iptables-nft-save could not list (report.ts NftBaseChain): a table
  // has one per hook at most in practice; the total keeps the worst case within the 256 KiB.
  nftBaseChainsPerTable: 8,
  nftBaseChainsPerReport: 16,
  timestamp: 32, // 2026-01-01T00:00:00.000Z is 24
} as const;
