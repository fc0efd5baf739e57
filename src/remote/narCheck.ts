import { narHasher, type NarHasher } from './narHasher.js';
import type { PathInfo } from './serveCodec/messages.js';
import { UntrustedReplyError } from './untrustedReplyError.js';

/** One path's NAR on its way: read `chunks` to the end before the next NAR. */
export interface NarStream {
  info: PathInfo;
  chunks: AsyncIterable<Buffer>;
}

/**
 * Passes the NAR of `info` through while checking it against the info:
 * never more bytes than its NAR size, exactly that many in the end, and,
 * with `hash`, the SHA-256 of the bytes equal to its NAR hash. The last
 * chunk is held back until every check passed, so a receiver never has the
 * whole NAR of a path that fails one: the transfer stops first, and a store
 * registers nothing from a NAR it never saw the end of.
 */
export async function* checkedNar(chunks: AsyncIterable<Buffer>, info: PathInfo, host: string, options: { hash: boolean }): AsyncGenerator<Buffer> {
  const hasher = options.hash ? narHasher(info.narSize) : undefined;
  try {
    yield* checked(chunks, info, host, hasher);
  } finally {
    hasher?.close();
  }
}

async function* checked(chunks: AsyncIterable<Buffer>, info: PathInfo, host: string, hasher: NarHasher | undefined): AsyncGenerator<Buffer> {
  const expected = hasher ? expectedDigest(info, host) : undefined;
  let size = 0;
  let held: Buffer | undefined;
  for await (const chunk of chunks) {
    size += chunk.length;
    if (size > info.narSize) {
      throw new UntrustedReplyError(host, info.path, `it sent more NAR bytes than the ${info.narSize} its path info gives`);
    }
    const busy = hasher?.update(chunk);
    if (busy) await busy;
    if (held !== undefined) yield held;
    held = chunk;
  }
  if (size !== info.narSize) {
    throw new UntrustedReplyError(host, info.path, `its NAR has ${size} bytes where its path info gives ${info.narSize}`);
  }
  if (hasher && expected && !(await hasher.digest()).equals(expected)) {
    throw new UntrustedReplyError(host, info.path, `its NAR does not have the hash ${info.narHash} its path info gives`);
  }
  if (held !== undefined) yield held;
}

/** The info's `sha256:` NAR hash as bytes: Nix sends base32, older stores base16. */
function expectedDigest(info: PathInfo, host: string): Buffer {
  const match = /^sha256:([0-9a-z]+)$/.exec(info.narHash ?? '');
  const text = match?.[1];
  const digest = text === undefined ? undefined : text.length === 64 ? Buffer.from(text, 'hex') : fromNixBase32(text);
  if (digest === undefined || digest.length !== 32) {
    throw new UntrustedReplyError(host, info.path, `its path info gives ${JSON.stringify(info.narHash ?? '')} as NAR hash, which is not a SHA-256 hash`);
  }
  return digest;
}

const BASE32 = '0123456789abcdfghijklmnpqrsvwxyz';

/** Nix's base32 (least significant 5-bit group last) of a 32-byte digest; undefined when it is not one. */
function fromNixBase32(text: string): Buffer | undefined {
  if (text.length !== 52) return undefined;
  const bytes = Buffer.alloc(32);
  for (let n = 0; n < text.length; n++) {
    const digit = BASE32.indexOf(text[text.length - n - 1]!);
    if (digit < 0) return undefined;
    const bit = n * 5;
    const i = bit >> 3;
    const j = bit & 7;
    bytes[i]! |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < 32) bytes[i + 1]! |= carry;
    else if (carry !== 0) return undefined;
  }
  return bytes;
}
