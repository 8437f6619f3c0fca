// The aggregator writes its log asynchronously (pino, sync: false) to a pipe, and its HTTP
// answers go over a socket: a line can reach a test after an answer that was sent after it was
// written. A test that counts log lines first waits for the ones it expects.
import { eventually } from './cluster.js';

/** Resolves once `arrived()` holds, or after `seconds`; the count that follows then says what is missing. */
export async function logCaughtUp(arrived: () => boolean, seconds = 5): Promise<void> {
  await eventually('the log lines', seconds, async () => arrived()).catch(() => undefined);
}
