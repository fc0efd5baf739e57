import { createHash } from 'node:crypto';
import { toNixBase32 } from '../storePath/nixHash.js';
import { recursiveSha256ContentAddress, recursiveSha256Path } from '../storePath/contentAddressedPath.js';
import { DEFAULT_STORE_DIR } from '../storePath/storePath.js';
import { Serializer } from './serveCodec/serializer.js';
import { ServeConnectionLostError, type NarStream, type ServeClient } from './serveClient.js';
import { ServeProtocolError } from './serveCodec/errors.js';
import { acceptsAddToStoreNar, type PathInfo } from './serveCodec/messages.js';

/**
 * Does a store take unsigned, input-addressed paths from this client? A
 * nix-daemon does so only for users in its `trusted-users` (or with
 * `require-sigs = false`); everyone else's imports need a signature by a key
 * in its `trusted-public-keys`, and Nix 2.8's daemon also refuses them
 * build-derivation of input-addressed derivations. Nix itself gives no way
 * to ask, so the store is the judge:
 *
 * 1. add a tiny content-addressed path (its path follows from its content,
 *    so every store takes it unsigned; it is the same path on every machine);
 * 2. add the same path again, but claiming no content address and carrying
 *    no signature. Nix checks signatures before it looks whether the path is
 *    already valid (LocalStore::addToStore), so a store that demands one
 *    refuses, and one that does not finds the path valid and changes
 *    nothing.
 *
 * The client must be one of its own: a refusal ends its server.
 */

export const PROBE_NAME = 'offload-trust-probe';
const PROBE_CONTENT = 'offload asks whether this store takes unsigned paths from its user\n';

export type UnsignedImports =
  | { accepted: true }
  /** `reason`: the store's own words (`cannot add path '…' because it lacks a valid signature`). */
  | { accepted: false; reason: string };

/** The probe path's NAR and its info as a content-addressed path, for `storeDir`. */
export function probePath(storeDir: string = DEFAULT_STORE_DIR): { info: PathInfo; nar: Buffer } {
  const nar = new Serializer(256)
    .string('nix-archive-1')
    .string('(')
    .string('type')
    .string('regular')
    .string('contents')
    .string(PROBE_CONTENT)
    .string(')')
    .flush();
  const digest = createHash('sha256').update(nar).digest();
  const info: PathInfo = {
    path: recursiveSha256Path(digest, PROBE_NAME, storeDir),
    references: [],
    downloadSize: nar.length,
    narSize: nar.length,
    narHash: `sha256:${toNixBase32(digest)}`,
    ca: recursiveSha256ContentAddress(digest),
    sigs: [],
  };
  return { info, nar };
}

export async function probeUnsignedImports(client: ServeClient, storeDir: string = DEFAULT_STORE_DIR): Promise<UnsignedImports> {
  // import-paths, all an older server has, carries no content address: the first step would be refused too.
  if (!acceptsAddToStoreNar(client.serverVersion)) {
    throw new ServeProtocolError(`nix-store --serve on ${client.host} speaks protocol 2.${client.serverVersion & 0xff}, too old for add-to-store-NAR (2.5), so offload cannot ask it.`);
  }
  const { info, nar } = probePath(storeDir);
  const valid = await client.queryValidPaths([info.path]);
  if (valid.length === 0) await client.addNars(oneNar(info, nar));
  const { ca: _ca, ...unsigned } = info;
  try {
    await client.addNars(oneNar({ ...unsigned, sigs: [] }, nar));
    return { accepted: true };
  } catch (error) {
    if (error instanceof ServeConnectionLostError && error.serverError !== undefined && REFUSED_UNSIGNED.test(error.serverError)) {
      return { accepted: false, reason: error.serverError };
    }
    throw error;
  }
}

/** The probe's one small NAR, in add-to-store-NAR's shape. */
async function* oneNar(info: PathInfo, nar: Buffer): AsyncGenerator<NarStream> {
  yield { info, chunks: bytes(nar) };
}

async function* bytes(nar: Buffer): AsyncGenerator<readonly Buffer[]> {
  yield [nar];
}

/** LocalStore::addToStore's refusal of a path without a trusted signature. */
const REFUSED_UNSIGNED = /because it lacks a valid signature/;
