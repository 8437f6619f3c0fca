// Kubernetes resource quantities ("500m", "0.5", "600Mi", "1e9", "700M"), exactly as the API
// server accepts them (k8s.io/apimachinery/pkg/api/resource/quantity.go):
//
//   <quantity>        ::= <signedNumber><suffix>
//   <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
//   <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
//   <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
//   <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>
//   <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
//
// A value is kept exact (an integer over a power of ten), so "0.5" equals "500m" and "1Gi" equals
// "1073741824" without floating-point doubt. @kubernetes/client-node's quantityToScalar is no
// substitute: it throws on "1.5Gi" and returns a number for some suffixes and a bigint for others.

export interface Quantity {
  /** The text as written, for messages. */
  readonly text: string;
  /** value = num / 10^scale, exactly. */
  readonly num: bigint;
  readonly scale: number;
}

const BINARY_SI: Record<string, bigint> = { Ki: 1n << 10n, Mi: 1n << 20n, Gi: 1n << 30n, Ti: 1n << 40n, Pi: 1n << 50n, Ei: 1n << 60n };
const DECIMAL_SI: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

// The alternatives are tried in order: "1E3" is an exponent, "1E" is exa; "1e" is nothing.
const QUANTITY = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:(Ki|Mi|Gi|Ti|Pi|Ei)|[eE]([+-]?\d+)|(n|u|m|k|M|G|T|P|E)?)$/;
// Far beyond any real amount; keeps a hostile "1e999999999" from building a huge bigint.
const MAX_TEXT = 64;
const MAX_EXPONENT = 60;

/** Parses a Kubernetes quantity. Throws a RangeError that says what is wrong. */
export function parseQuantity(text: string): Quantity {
  if (text.length > MAX_TEXT) throw new RangeError(`"${text.slice(0, 20)}...": a quantity is at most ${MAX_TEXT} characters`);
  const match = QUANTITY.exec(text);
  if (!match) {
    throw new RangeError(`"${text}" is not a Kubernetes quantity (a number with an optional suffix: m, k, M, G, Ki, Mi, Gi, ... or an exponent such as e9)`);
  }
  const [, sign, number, binary, exponent, decimal] = match;
  const [whole = '', fraction = ''] = number!.split('.');
  let num = BigInt((whole || '0') + fraction);
  let scale = fraction.length;
  if (binary !== undefined) {
    num *= BINARY_SI[binary]!;
  } else {
    const power = exponent !== undefined ? Number(exponent) : DECIMAL_SI[decimal ?? '']!;
    if (Math.abs(power) > MAX_EXPONENT) throw new RangeError(`"${text}": the exponent is out of range`);
    if (power >= 0) num *= 10n ** BigInt(power);
    else scale -= power;
  }
  return { text, num: sign === '-' ? -num : num, scale };
}

/** -1, 0 or 1 as a is less than, equal to or greater than b. */
export function compareQuantities(a: Quantity, b: Quantity): -1 | 0 | 1 {
  const scale = Math.max(a.scale, b.scale);
  const x = a.num * 10n ** BigInt(scale - a.scale);
  const y = b.num * 10n ** BigInt(scale - b.scale);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The value as a number (cores, bytes); exact up to 2^53, close enough beyond. */
export function quantityToNumber(q: Quantity): number {
  return Number(q.num) / 10 ** q.scale;
}
