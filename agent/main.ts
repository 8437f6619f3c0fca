#!/usr/bin/env -S node --max-semi-space-size=1 --liftoff-only --no-opt --no-maglev --single-threaded --expose-gc
// nodeprep-agent: the entry point. Parses the command line and hands over; the work is in
// collect.ts (one sample) and run.ts (the loop that sends).
//
// The node flags on the #! line keep the agent's memory small: it runs on every node, so its
// memory is the cluster's (design.md section 8: under 64 MiB on a node with 5,000 services).
// Each was measured by leaving it out, on a node with 5,000 services (npm run bench, issue 13
// item 3; Node.js 24 alone is 42 MiB resident, the agent with all of them 64-66 MiB):
// - --max-semi-space-size=1: V8's young generation (up to 16 MiB per semi-space) is sized for
//   throughput; the agent's garbage is short-lived 64 KiB chunks of iptables-save text. 15 MiB.
// - --liftoff-only: undici parses HTTP with WebAssembly (llhttp); V8's optimizing compiler for it
//   costs 14 MiB, and Liftoff's code parses a response of a few bytes just as well.
// - --no-opt --no-maglev: no optimizing JavaScript compilers, whose code and work the agent does
//   not need; about 6 MiB, for about 25 ms more CPU per sample (75,000 lines parsed by the
//   interpreter and its baseline compiler).
// - --single-threaded: no V8 worker threads (background compilation and GC) for a process that
//   sleeps between samples; about 1 MiB.
// - --expose-gc: run.ts collects each sample's garbage before it sleeps; 4-5 MiB.
// Dockerfile.agent's ENTRYPOINT and the chart's command carry the same flags (a test checks).
import { USAGE, UsageError, hostNodeName, parseAgentArgs, type AgentCommand } from './cli.js';
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
    nodeName: cmd.nodeName ?? hostNodeName(),
    cluster: cmd.cluster,
    dumps: cmd.dumps,
    procNet: cmd.procNet,
    kernelModules: cmd.kernelModules,
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
