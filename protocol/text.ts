// What a string in a report may hold. No zod: the agent loads this.
//
// JSON.stringify writes a C0 control character (U+0000-U+001F) as a six-byte \uXXXX escape (two
// bytes for \n, \t, ...) and a lone surrogate as one too, so a string of them is six times its
// length on the wire, and LIMITS, which count UTF-16 code units, would bound nothing. Without
// them (and without DEL, a control character too) a code unit is at most 3 bytes of JSON: a
// character of the Basic Multilingual Plane is at most 3 bytes of UTF-8, `"` and `\` are escaped
// in 2, and a surrogate pair is 4 bytes for 2 units. test/agent/protocol.test.ts builds the largest
// report on that figure.

// What is allowed, said as the code points it may hold (space to "~", U+0080 to U+D7FF, U+E000
// to U+10FFFF): with the `u` flag a surrogate pair is one code point above U+FFFF, and a lone
// surrogate matches nothing. The source goes into the published JSON Schema as it is, so it names
// no surrogate (Rust's regex, which Schemathesis validates with, refuses them) and holds the six
// range ends as characters, not escapes: ECMAScript, Python and Rust read them alike. ajv compiles
// patterns with `u` (unicodeRegExp), as zod does here.
export const PRINTABLE = new RegExp('^[ -~\u0080-\ud7ff\ue000-\u{10ffff}]*$', 'u');
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
