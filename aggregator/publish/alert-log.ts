// The alert log (design.md section 2: alerts are transitions): one line when a finding appears,
// one when it goes. Only the finding's identity and a sample of node names are logged, never a
// report.
import type { Logger } from 'pino';
import type { Transition } from '../findings/book.js';
import type { Outlet } from './outlet.js';

// How many node names an alert line carries; the finding has more, and nodeCount says how many.
const LOGGED_NODES = 20;

export function logTransition(log: Logger, { kind, finding, nodeCount, reason }: Transition): void {
  const fields = {
    id: finding.id,
    code: finding.code,
    severity: finding.severity,
    nodes: finding.nodes.slice(0, LOGGED_NODES),
    ...(nodeCount > LOGGED_NODES ? { nodeCount } : {}),
    ...(reason ? { reason } : {}),
    ...(kind === 'raised' ? { message: finding.message } : {}),
  };
  // Raised problems at warn (critical ones at error) so they stand out at the default level;
  // resolutions at info.
  if (kind === 'resolved') log.info(fields, 'finding resolved');
  else if (finding.severity === 'critical') log.error(fields, 'finding raised');
  else if (finding.severity === 'warning') log.warn(fields, 'finding raised');
  else log.info(fields, 'finding raised');
}

export function alertLog(log: Logger): Outlet {
  return { name: 'alert log', transition: (t) => logTransition(log, t) };
}
