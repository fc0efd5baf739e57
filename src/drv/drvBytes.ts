/**
 * Derivations are bytes: Nix strings hold any bytes, and a `.drv` can carry
 * an env value that is not UTF-8 (`builtins.readFile` of a binary file). The
 * output paths in it were computed over those bytes, so a builder must get
 * them unchanged or it builds a different derivation under the same paths.
 *
 * offload keeps derivation strings as JS strings (parsing, JSON and messages
 * want text) in a lossless form, Python's "surrogateescape": valid UTF-8
 * decodes as usual, and each byte that is not part of valid UTF-8 becomes the
 * lone surrogate U+DC80–U+DCFF. Valid UTF-8 never decodes to a lone
 * surrogate, so encoding back is exact. Everything that sends a derivation's
 * strings encodes them with {@link encodeDrvText}.
 */

const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** A surrogate not paired with its other half (`u` mode reads pairs as one code point). */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const ESCAPED_BYTE = 0xdc00;

/** The bytes of a `.drv` file (or any Nix string) as a lossless JS string. */
export function decodeDrvBytes(bytes: Uint8Array): string {
  try {
    return strict.decode(bytes);
  } catch {
    return decodeWithEscapes(bytes);
  }
}

/** The exact bytes a string from {@link decodeDrvBytes} came from; UTF-8 for any other text. */
export function encodeDrvText(text: string): Buffer {
  if (!LONE_SURROGATE.test(text)) return Buffer.from(text, 'utf8');
  const parts: Buffer[] = [];
  let runStart = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0xd800 || code > 0xdfff) continue;
    if (code <= 0xdbff && i + 1 < text.length && isLowSurrogate(text.charCodeAt(i + 1))) {
      i++;
      continue;
    }
    if (code < 0xdc80 || code > 0xdcff) {
      throw new RangeError(`the text holds the unpaired surrogate U+${code.toString(16).toUpperCase()} at character ${i}, which is no byte sequence`);
    }
    parts.push(Buffer.from(text.slice(runStart, i), 'utf8'), Buffer.of(code - ESCAPED_BYTE));
    runStart = i + 1;
  }
  parts.push(Buffer.from(text.slice(runStart), 'utf8'));
  return Buffer.concat(parts);
}

/** Whether a string is representable: no unpaired surrogate outside the escaped-byte range. */
export function drvTextProblem(text: string): string | undefined {
  try {
    encodeDrvText(text);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** The order of the strings' bytes, as C++ std::string compares them (Nix's std::map keys). */
export function compareDrvText(a: string, b: string): number {
  return Buffer.compare(encodeDrvText(a), encodeDrvText(b));
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

function decodeWithEscapes(bytes: Uint8Array): string {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let out = '';
  let runStart = 0;
  let i = 0;
  while (i < buffer.length) {
    const length = validSequenceLength(buffer, i);
    if (length > 0) {
      i += length;
      continue;
    }
    out += buffer.toString('utf8', runStart, i) + String.fromCharCode(ESCAPED_BYTE + buffer[i]!);
    i++;
    runStart = i;
  }
  return out + buffer.toString('utf8', runStart, buffer.length);
}

/** Length of the well-formed UTF-8 sequence at `i` (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF), or 0. */
function validSequenceLength(b: Buffer, i: number): number {
  const first = b[i]!;
  if (first < 0x80) return 1;
  const continuation = (k: number, low = 0x80, high = 0xbf) => i + k < b.length && b[i + k]! >= low && b[i + k]! <= high;
  if (first >= 0xc2 && first <= 0xdf) return continuation(1) ? 2 : 0;
  if (first >= 0xe0 && first <= 0xef) {
    const low = first === 0xe0 ? 0xa0 : 0x80;
    const high = first === 0xed ? 0x9f : 0xbf;
    return continuation(1, low, high) && continuation(2) ? 3 : 0;
  }
  if (first >= 0xf0 && first <= 0xf4) {
    const low = first === 0xf0 ? 0x90 : 0x80;
    const high = first === 0xf4 ? 0x8f : 0xbf;
    return continuation(1, low, high) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}
