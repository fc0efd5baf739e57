/**
 * Nix's hash notation: `<algo>:<digest>` with the digest in Nix's own base32
 * (the usual form in narinfo files), base16 or base64, or SRI `<algo>-<base64>`.
 * Signatures cover the base32 form, so every hash is brought to it before
 * a fingerprint is made.
 */

const BASE32 = '0123456789abcdfghijklmnpqrsvwxyz';
const BASE32_VALUE = new Map([...BASE32].map((c, i) => [c, i]));

const DIGEST_BYTES: Record<string, number> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };

export interface NixHash {
  algo: string;
  digest: Buffer;
}

/** Nix's base32: least significant 5-bit groups last, no padding. */
export function toNixBase32(bytes: Uint8Array): string {
  const length = Math.floor((bytes.length * 8 - 1) / 5) + 1;
  let out = '';
  for (let n = length - 1; n >= 0; n--) {
    const b = n * 5;
    const i = Math.floor(b / 8);
    const j = b % 8;
    const c = (bytes[i]! >> j) | (i >= bytes.length - 1 ? 0 : (bytes[i + 1]! << (8 - j)) & 0xff);
    out += BASE32[c & 0x1f];
  }
  return out;
}

/** Undefined when `text` is not Nix base32 of exactly `size` bytes. */
export function fromNixBase32(text: string, size: number): Buffer | undefined {
  if (text.length !== Math.floor((size * 8 - 1) / 5) + 1) return undefined;
  const bytes = Buffer.alloc(size);
  for (let n = 0; n < text.length; n++) {
    const digit = BASE32_VALUE.get(text[text.length - n - 1]!);
    if (digit === undefined) return undefined;
    const b = n * 5;
    const i = Math.floor(b / 8);
    const j = b % 8;
    bytes[i]! |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < size) bytes[i + 1]! |= carry;
    else if (carry !== 0) return undefined;
  }
  return bytes;
}

/** Undefined when `text` is not a hash Nix would accept. */
export function parseNixHash(text: string): NixHash | undefined {
  const sri = /^([a-z0-9]+)-([A-Za-z0-9+/=]+)$/.exec(text);
  const typed = /^([a-z0-9]+):([A-Za-z0-9+/=]+)$/.exec(text);
  const match = typed ?? sri;
  if (!match) return undefined;
  const algo = match[1]!;
  const body = match[2]!;
  const size = DIGEST_BYTES[algo];
  if (size === undefined) return undefined;
  let digest: Buffer | undefined;
  if (sri) digest = decodeBase64(body, size);
  else if (body.length === size * 2 && /^[0-9a-f]+$/.test(body)) digest = Buffer.from(body, 'hex');
  else digest = fromNixBase32(body, size) ?? decodeBase64(body, size);
  return digest ? { algo, digest } : undefined;
}

function decodeBase64(text: string, size: number): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.length === size && bytes.toString('base64') === text ? bytes : undefined;
}

/** `sha256:<base32>`, the form narinfo fingerprints use. */
export function formatNixBase32(hash: NixHash): string {
  return `${hash.algo}:${toNixBase32(hash.digest)}`;
}
