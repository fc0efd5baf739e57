import type { BuilderSigning } from '../remote/signingKeys.js';
import { isTrustedKey } from '../remote/signingKeys.js';
import { SIGNATURE_FIXES } from '../remote/storeRefusal.js';
import type { UnsignedImports } from '../remote/unsignedImportProbe.js';

/**
 * Can what the builders build be copied into the local store? Decided
 * before anything is built, from what the local store said when offered an
 * unsigned path (unsignedImportProbe.ts), the keys each builder signs with
 * and the local store's trusted-public-keys. Pure.
 */
export interface CopyBackInput {
  /** The local user, for the message. */
  user: string;
  local: UnsignedImports;
  /** Each remote builder of the run, with its signing keys or why they are unknown. */
  builders: ReadonlyArray<{ host: string; signing: BuilderSigning }>;
  /** trusted-public-keys as the local store's daemon reads them. */
  trustedPublicKeys: readonly string[];
  /** Where those keys are set, for the message (e.g. /etc/nix/nix.conf). */
  confFile: string;
}

export type CopyBackVerdict =
  /**
   * `signing`: the builders whose outputs the local store will take because
   * they carry a trusted signature (empty when it takes unsigned ones);
   * `notes`: builders whose keys could not be learned, or that may sign
   * in a post-build-hook, so it is not known (a refusal then fails the job
   * at once).
   */
  | { ok: true; signing: string[]; notes: string[] }
  | { ok: false; message: string };

export function copyBackVerdict(input: CopyBackInput): CopyBackVerdict {
  if (input.local.accepted) return { ok: true, signing: [], notes: [] };
  const notes: string[] = [];
  const signedBy: string[] = [];
  const refused: string[] = [];
  for (const { host, signing } of input.builders) {
    if (!signing.ok) {
      notes.push(`cannot tell whether the local store will take what ${host} builds: its signing keys are unknown (${signing.reason})`);
      continue;
    }
    const known = signing.keys.filter((k) => k.publicKey !== undefined);
    if (known.some((k) => isTrustedKey(k.publicKey!, input.trustedPublicKeys))) {
      signedBy.push(host);
      continue;
    }
    const unknown = signing.keys.filter((k) => k.publicKey === undefined);
    if (unknown.length > 0) {
      notes.push(
        `cannot tell whether the local store will take what ${host} builds: ${unknown.map((k) => `its key ${k.file} cannot be read (${k.problem ?? 'unknown reason'})`).join('; ')}`,
      );
      continue;
    }
    if (signing.postBuildHook !== undefined) {
      const keys = known.length === 0 ? 'no secret-key-files' : `only ${known.map((k) => k.publicKey!).join(' and ')} in secret-key-files, which the local store does not trust`;
      notes.push(`cannot tell whether the local store will take what ${host} builds: it has ${keys}, but its post-build-hook (${signing.postBuildHook}) may sign after each build`);
      continue;
    }
    refused.push(known.length === 0 ? `${host} signs nothing` : `${host} signs with ${known.map((k) => k.publicKey!).join(' and ')}, which it does not trust`);
  }
  if (refused.length === 0) return { ok: true, signing: signedBy, notes };
  return {
    ok: false,
    message:
      `the local store would refuse what the builders build, so nothing was built: ` +
      `it is a nix-daemon that takes paths from ${input.user} only with a signature by a key in its trusted-public-keys ` +
      `(it said: ${input.local.reason}), and ${refused.join('; ')}. ` +
      `To fix this, ${SIGNATURE_FIXES} (${input.confFile}).`,
  };
}
