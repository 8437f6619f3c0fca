// What `npm start` prints first (issue 21, 3): the guide's four steps as GET /v1/readiness
// answers them, each ready / not ready / unknown with its reason, the same words as the report
// object's step results. Pure: the answer in, lines out; local.ts prints them.
import type { Readiness, ReadinessState } from '../protocol/illumio.js';

const STATE: Record<ReadinessState, string> = { ready: 'ready', 'not-ready': 'not ready', unknown: 'unknown' };

export function readinessLines(readiness: Readiness): string[] {
  const width = Math.max(...readiness.steps.map((s) => s.title.length));
  const lines = [`Ready for C-VEN: ${readiness.ready ? 'yes' : 'no'} (${readiness.reason})`];
  readiness.steps.forEach((s, i) => lines.push(`  ${i + 1}. ${s.title.padEnd(width)}  ${STATE[s.state].padEnd(9)}  ${s.reason}`));
  return lines;
}
