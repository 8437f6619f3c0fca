// Parser benchmark (design.md section 8, issue "Foundation"): a 75,000-line dump of a kube-proxy
// node with 5,000 services, made by the real iptables-save in a scratch network namespace.
// Figures, and ratios against baselines measured in the same run; no pass/fail.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IptablesSaveParser, parseIptablesSave } from '../../agent/iptables-save.js';
import { AGENT, makeDump, median, peakRss, shebangFlags } from './tools.js';

const RUNS = 21;

export async function benchParser(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nodeprep-bench-'));
  try {
    const { text, saveMs, source } = makeDump();
    const file = path.join(dir, 'dump.txt');
    writeFileSync(file, text);
    const lines = text.split('\n').length - 1;
    console.log(`parser: ${lines} lines, ${(text.length / 1e6).toFixed(1)} MB (${source})`);

    // The agent parses 64 KiB chunks as they come out of the pipe; so does this.
    const chunks: string[] = [];
    for (let i = 0; i < text.length; i += 64 * 1024) chunks.push(text.slice(i, i + 64 * 1024));
    const split = median(RUNS, () => text.split('\n').length);
    const parse = median(RUNS, () => parseIptablesSave(text).ruleCount);
    const streamed = median(RUNS, () => {
      const parser = new IptablesSaveParser();
      for (const c of chunks) parser.push(c);
      return parser.end().ruleCount;
    });
    console.log(`  split into lines (baseline)   ${split.toFixed(2)} ms`);
    console.log(`  parseIptablesSave (whole)     ${parse.toFixed(2)} ms   ratio ${(parse / split).toFixed(2)}x (target <= 3)`);
    console.log(`  parser fed 64 KiB chunks      ${streamed.toFixed(2)} ms   ratio ${(streamed / split).toFixed(2)}x`);
    if (saveMs !== undefined) console.log(`  iptables-save printing it     ${saveMs.toFixed(2)} ms   parser is ${((parse / saveMs) * 100).toFixed(1)}% of that`);

    const rssKiB = await peakRss(process.execPath, [...shebangFlags(AGENT), AGENT, 'collect', '--node-name', 'bench', '--host-root', dir, '--from-dump', `ipv4/nft=${file}`]);
    const bareKiB = await peakRss(process.execPath, ['-e', '']);
    console.log(`  collect --from-dump peak RSS  ${(rssKiB / 1024).toFixed(1)} MiB (target < 64), bare node ${(bareKiB / 1024).toFixed(1)} MiB`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

