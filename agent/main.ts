#!/usr/bin/env node
// nodeprep-agent: the entry point. Parses the command line and hands over; the work is in
// collect.ts (one sample) and run.ts (the loop that sends).
import os from 'node:os';
import { NodeReport } from '../protocol/report.js';
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
  // The report must be one the aggregator accepts; if it is not, that is a bug here, and
  // printing it anyway would only move the error to the aggregator.
  const checked = NodeReport.safeParse(report);
  if (!checked.success) {
    process.stderr.write(`nodeprep-agent: internal error: the report does not match NodeReport v1: ${checked.error.message}\n`);
    return 70;
  }
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
