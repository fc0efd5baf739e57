import { createHash } from 'node:crypto';
import { parseNixHash } from '../storePath/nixHash.js';
import type { PathInfo } from './serveCodec/messages.js';
import { UntrustedReplyError } from './untrustedReplyError.js';

/**
 * Who compares a NAR's SHA-256 with its info: `here`, as the bytes stream
 * by; `receiver`, the store that adds it (add-to-store-NAR: Nix's
 * LocalStore::addToStore hashes what it restores and refuses a mismatch
 * before it registers the path), which spares this process the hashing;
 * `none` for a trusted source (the local store).
 */
export type NarHashCheck = 'here' | 'receiver' | 'none';

/** One path's NAR on its way, in batches of chunks: read `chunks` to the end before the next NAR. */
export interface NarStream {
  info: PathInfo;
  chunks: AsyncIterable<readonly Buffer[]>;
  /**
   * The untrusted host that sent the NAR unhashed (`receiver`): the store
   * that adds it must check the hash (ServeClient.addNars hashes for one that
   * cannot), and its refusal of the hash is this host's lie.
   */
  unhashedFrom?: string;
  /**
   * Written by this process from the local store's files rather than by
   * Nix (run/localNars.ts): a receiver's refusal of its hash or size means
   * the files differ from what the local store recorded (LocalNarError).
   */
  fromLocalFiles?: boolean;
  /**
   * Takes back a chunk of this NAR once the receiver's input has taken it
   * (its write completed), for the source to fill again; never called for
   * a chunk whose write failed.
   */
  recycle?: (chunk: Buffer) => void;
}

/**
 * Passes the NAR of `info` through, batch by batch, while checking it
 * against the info: never more bytes than its NAR size, exactly that many
 * in the end, and, with `hash`, the SHA-256 of the bytes equal to its NAR
 * hash. The last batch is held back until every check passed, so a
 * receiver never has the whole NAR of a path that fails one: the transfer
 * stops first, and a store registers nothing from a NAR it never saw the
 * end of.
 */
export async function* checkedNar(
  batches: AsyncIterable<Buffer | readonly Buffer[]>,
  info: PathInfo,
  host: string,
  options: { hash: boolean },
): AsyncGenerator<readonly Buffer[]> {
  // On this thread, chunk by chunk: SHA-256 costs ~0.7 s CPU per GiB here,
  // what handing the bytes to a worker thread cost this thread too (a copy
  // into batches, postMessage), and the worker's own work on top.
  const hasher = options.hash ? createHash('sha256') : undefined;
  const expected = hasher ? expectedDigest(info, host) : undefined;
  let size = 0;
  let held: readonly Buffer[] | undefined;
  for await (const item of batches) {
    const batch = Buffer.isBuffer(item) ? [item] : item;
    for (const chunk of batch) {
      size += chunk.length;
      hasher?.update(chunk);
    }
    if (size > info.narSize) {
      throw new UntrustedReplyError(host, info.path, `it sent more NAR bytes than the ${info.narSize} its path info gives`);
    }
    if (held !== undefined) yield held;
    held = batch;
  }
  if (size !== info.narSize) {
    throw new UntrustedReplyError(host, info.path, `its NAR has ${size} bytes where its path info gives ${info.narSize}`);
  }
  if (hasher && expected && !hasher.digest().equals(expected)) {
    throw new UntrustedReplyError(host, info.path, `its NAR does not have the hash ${info.narHash} its path info gives`);
  }
  if (held !== undefined) yield held;
}

/** The info's NAR hash as the SHA-256 digest it must be (Nix sends base32; older stores base16). */
export function expectedDigest(info: PathInfo, host: string): Buffer {
  const hash = parseNixHash(info.narHash ?? '');
  if (hash?.algo !== 'sha256') {
    throw new UntrustedReplyError(host, info.path, `its path info gives ${JSON.stringify(info.narHash ?? '')} as NAR hash, which is not a SHA-256 hash`);
  }
  return hash.digest;
}
