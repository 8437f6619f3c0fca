// What a string in a report may hold. No zod: the agent loads this.
//
// JSON.stringify writes a C0 control character (U+0000-U+001F) as a six-byte \uXXXX escape (two
// bytes for \n, \t, ...) and a lone surrogate as one too, so a string of them is six times its
// length on the wire, and LIMITS, which count UTF-16 code units, would bound nothing. Without
// them (and without DEL, a control character too) a code unit is at most 3 bytes of JSON: a
// character of the Basic Multilingual Plane is at most 3 bytes of UTF-8, `"` and `\` are escaped
// in 2, and a surrogate pair is 4 bytes for 2 units. test/agent/protocol.test.ts builds the largest
// report on that figure.

// The `u` flag makes [\ud800-\udfff] match a surrogate only when it is not half of a pair.
// JSON Schema keeps the source without the flag; ajv compiles patterns with `u` (unicodeRegExp).
// eslint-disable-next-line no-control-regex -- control characters are what it is about
export const PRINTABLE = /^[^\u0000-\u001f\u007f\ud800-\udfff]*$/u;
export const PRINTABLE_RULE = 'must not contain control characters (U+0000-U+001F, U+007F) or unpaired surrogates';

// eslint-disable-next-line no-control-regex -- control characters are what it is about
const UNPRINTABLE = /[\u0000-\u001f\u007f\ud800-\udfff]/gu;

/**
 * `text` with every control character and lone surrogate replaced by U+FFFD, one code unit for
 * one, so lengths already cut to LIMITS stay within them.
 */
export function printable(text: string): string {
  return PRINTABLE.test(text) ? text : text.replace(UNPRINTABLE, '\ufffd');
}

// The kernel's names for built-in chains (PREROUTING, INPUT, ...) and their policies (ACCEPT,
// DROP): the parser takes nothing else for either, so reports carry them as ASCII.
export const BUILTIN_WORD = /^[A-Z]{1,16}$/;
