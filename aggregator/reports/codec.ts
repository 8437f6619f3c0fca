// How reports are kept: deflated against a dictionary, and known again by a digest of their facts.
import { createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync, constants as zlibConstants } from 'node:zlib';

/**
 * A digest of the report as received, without its collectedAt value. Equal digests mean equal
 * facts; unequal ones (another key order, say) only cost the full path.
 */
export function reportFingerprint(rawJson: string, collectedAt: string): string {
  const hash = createHash('sha1');
  const field = `"collectedAt":"${collectedAt}"`;
  const at = rawJson.indexOf(field);
  if (at < 0) hash.update(rawJson);
  else hash.update(rawJson.slice(0, at)).update(rawJson.slice(at + field.length));
  return hash.digest('base64');
}

/**
 * Deflate with a preset dictionary: the first report this process kept. Reports from one
 * cluster's nodes are alike, so it shrinks the others about fivefold (zlib's `dictionary`
 * option); 100,000 parsed reports would not fit in 512 MiB, this takes a few hundred bytes a node.
 */
export class ReportCodec {
  private dictionary: Buffer | undefined;

  compress(rawJson: string): Buffer {
    this.dictionary ??= Buffer.from(rawJson);
    const deflated = deflateRawSync(rawJson, { level: zlibConstants.Z_BEST_SPEED, dictionary: this.dictionary });
    // zlib returns a view of its 16 KiB output chunk; keeping it would keep the whole chunk.
    return Buffer.from(deflated);
  }

  decompress(data: Buffer): string {
    return inflateRawSync(data, { dictionary: this.dictionary }).toString('utf8');
  }
}
