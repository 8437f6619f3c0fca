// A report known again by its bytes. An agent's heartbeat repeats its node's facts and changes
// only collectedAt; this digest leaves that value out, so two reports with equal digests say the
// same thing, and a heartbeat is recognised before it is parsed or validated: its bytes are those
// of a report that passed both. Unequal digests (another key order, say) only cost the full path.
import { createHash } from 'node:crypto';

export interface Fingerprint {
  // SHA-1 (base64) of the body without the collectedAt value, and where that value was.
  digest: string;
  // The collectedAt value as written, if the body has the field as JSON.stringify writes it.
  collectedAt: string | undefined;
}

// JSON.stringify's spelling. Inside a JSON string a quote is escaped, so this sequence is a key.
const FIELD = '"collectedAt":"';

export function fingerprintOf(rawJson: string): Fingerprint {
  const hash = createHash('sha1');
  const at = rawJson.indexOf(FIELD);
  const start = at + FIELD.length;
  const end = at < 0 ? -1 : rawJson.indexOf('"', start);
  if (end < 0) return { digest: hash.update(rawJson).digest('base64'), collectedAt: undefined };
  // The offset goes in too: the same bytes with the value cut out elsewhere are another report.
  hash.update(rawJson.slice(0, start)).update(`\0${start}\0`).update(rawJson.slice(end));
  return { digest: hash.digest('base64'), collectedAt: detached(rawJson.slice(start, end)) };
}

/**
 * A copy of a short string cut from a long one. V8 makes a slice of 13 characters or more a view
 * of its parent, which it keeps alive: the store keeps collectedAt per node, and a view would
 * keep that node's whole request body (8 KiB and more) with it, 40 MiB at 5,000 nodes (heap
 * snapshot). A structured clone is a string of its own, the same code units.
 */
function detached(slice: string): string {
  return structuredClone(slice);
}
