// How reports are kept: deflated against a dictionary, as a string of bytes.
import { deflateRawSync, inflateRawSync } from 'node:zlib';

// Level 3, not 1: the same speed (about 28 us for a busy node's 8 KiB report), but its longer
// match search finds the dictionary's long runs: half the size (148 bytes against 332, measured
// on the benchmark's busy-node reports).
const LEVEL = 3;

/**
 * Deflate with a preset dictionary: the first report this process kept. Reports from one
 * cluster's nodes are alike, so the others shrink to a few hundred bytes, often less (zlib's
 * `dictionary` option): 100,000 parsed reports would not fit in 512 MiB, these fit in 50 MiB.
 *
 * The result is kept as a latin1 string, one byte a character: V8 stores it on its own heap at
 * its exact size. A Buffer per node would be an external allocation each (and zlib's output is a
 * view of a 16 KiB chunk, Buffer.from() a slice of a shared 8 KiB slab): at 100,000 nodes,
 * hundreds of MiB of native memory that the garbage collector neither sees nor compacts.
 */
export class ReportCodec {
  private dictionary: Buffer | undefined;

  compress(rawJson: string): string {
    this.dictionary ??= Buffer.from(rawJson);
    return deflateRawSync(rawJson, { level: LEVEL, windowBits: 14, memLevel: 4, dictionary: this.dictionary }).toString('latin1');
  }

  decompress(data: string): string {
    return inflateRawSync(Buffer.from(data, 'latin1'), { windowBits: 14, dictionary: this.dictionary }).toString('utf8');
  }
}
