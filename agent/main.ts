#!/usr/bin/env -S node --max-semi-space-size=1
// nodeprep-agent: the entry point. Parses the command line and hands over; the work is in
// collect.ts (one sample) and run.ts (the loop that sends).
//
// --max-semi-space-size=1: the agent runs on every node, so its memory is the cluster's. V8's
// default young generation (up to 16 MiB per semi-space) is sized for throughput; the agent's
// garbage is short-lived chunks of iptables-save text. A 1 MiB semi-space keeps a 75,000-line
// ruleset within the 64 MiB target (npm run bench). Dockerfile.agent passes the same flag.
import os from 'node:os';
import { USAGE, UsageError, parseAgentArgs, type AgentCommand } from './cli.js';
import { collectReport } from './collect.js';

async function main(): Promise<number> {
  let cmd: AgentCommand;
  try {
    cmd = parseAgentArgs(process.argv.slice(2), process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    if (err.message) process.stderr.write(`nodeprep-agent: ${err.message}\n\n`);
    process.stderr.write(USAGE);
    return err.message ? 2 : 0;
  }
  if (cmd.command === 'run') {
    const { runAgent } = await import('./run.js');
    return runAgent(cmd);
  }
  return collectOnce(cmd);
}

async function collectOnce(cmd: AgentCommand): Promise<number> {
  const { report, collectedAnything } = await collectReport({
    hostRoot: cmd.hostRoot,
    nodeName: cmd.nodeName ?? os.hostname(),
    cluster: cmd.cluster,
    dumps: cmd.dumps,
    procNet: cmd.procNet,
  });
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  for (const e of report.errors) process.stderr.write(`nodeprep-agent: ${e.source}: ${e.message}\n`);
  if (!collectedAnything) {
    process.stderr.write('nodeprep-agent: nothing could be collected (no machine ID, no iptables, no nft)\n');
    return 1;
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`nodeprep-agent: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 70;
  },
);
