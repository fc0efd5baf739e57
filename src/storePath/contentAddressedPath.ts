import { createHash } from 'node:crypto';
import { toNixBase32 } from './nixHash.js';
import { DEFAULT_STORE_DIR } from './storePath.js';

/**
 * The store path of a content-addressed path with no references, added as a
 * NAR hashed with SHA-256 (what `nix-store --add` makes of a file, and
 * `nix-store --print-fixed-path --recursive sha256 HASH NAME` prints):
 * Nix 2.8's makeFixedOutputPath → makeStorePath("source", …), libstore/store-api.cc.
 * The path follows from the content alone, so a nix-daemon accepts such a
 * path from any user without a signature.
 */
export function recursiveSha256Path(narSha256: Uint8Array, name: string, storeDir: string = DEFAULT_STORE_DIR): string {
  const fingerprint = `source:sha256:${Buffer.from(narSha256).toString('hex')}:${storeDir}:${name}`;
  const digest = createHash('sha256').update(fingerprint).digest();
  return `${storeDir}/${toNixBase32(compressHash(digest, 20))}-${name}`;
}

/** The content address Nix records for such a path: `fixed:r:sha256:<base32>`. */
export function recursiveSha256ContentAddress(narSha256: Uint8Array): string {
  return `fixed:r:sha256:${toNixBase32(narSha256)}`;
}

/** Nix's compressHash: XOR-folds a digest to `size` bytes. */
function compressHash(digest: Uint8Array, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < digest.length; i++) out[i % size]! ^= digest[i]!;
  return out;
}
