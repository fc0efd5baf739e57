import type { Finding } from './builderClaims.js';
import { isTrustedKey, type SigningKey } from './signingKeys.js';
import { SIGNATURE_FIXES } from './storeRefusal.js';
import type { UnsignedImports } from './unsignedImportProbe.js';

/**
 * What `machines check` says about signatures and trust, both ways: can
 * what a builder builds be copied into the local store (its signing keys
 * against the local trusted-public-keys, when the local store demands a
 * signature), and may the ssh user put unsigned paths into the builder's
 * store, as Nix requires of a remote builder's user. Pure.
 */

/** The local side, as the local store answered and its daemon's nix.conf says. */
export interface LocalTrust {
  user: string;
  /** Undefined when the local store could not be asked (no Nix here). */
  unsignedImports?: UnsignedImports;
  trustedPublicKeys: readonly string[];
}

/** One key as the report shows it. */
export interface KeyReport extends SigningKey {
  /** Listed in the local store's trusted-public-keys (undefined: its public key is unknown). */
  trustedLocally?: boolean;
}

export function keyReports(keys: readonly SigningKey[], local: LocalTrust): KeyReport[] {
  return keys.map((k) => (k.publicKey === undefined ? k : { ...k, trustedLocally: isTrustedKey(k.publicKey, local.trustedPublicKeys) }));
}

/** Findings about copying a builder's outputs back into the local store. */
export function signingFindings(host: string, keys: readonly KeyReport[], local: LocalTrust, postBuildHook?: string): Finding[] {
  const demandsSignature = local.unsignedImports?.accepted === false;
  const trusted = keys.filter((k) => k.trustedLocally === true);
  const untrusted = keys.filter((k) => k.trustedLocally === false);
  const unreadable = keys.filter((k) => k.publicKey === undefined);
  const unreadableText = unreadable.map((k) => `${k.file} (${k.problem ?? 'unreadable'})`).join(', ');
  if (trusted.length > 0) return [{ severity: 'note', message: `signs what it builds with ${trusted.map((k) => k.publicKey).join(', ')}, which the local store trusts` }];
  if (!demandsSignature) {
    if (keys.length === 0) return [];
    const which = untrusted.length > 0 ? untrusted.map((k) => k.publicKey).join(', ') : `the key in ${unreadableText}`;
    return [{ severity: 'note', message: `signs what it builds with ${which}; the local store does not need it (it takes unsigned paths from ${local.user})` }];
  }
  if (unreadable.length > 0 && untrusted.length === 0) {
    return [{ severity: 'warning', message: `signs with a key offload cannot read as the ssh user (${unreadableText}), so it cannot tell whether the local store will take what ${host} builds` }];
  }
  const signs = untrusted.length > 0 ? `signs with ${untrusted.map((k) => k.publicKey).join(', ')}, which the local store does not trust` : 'signs nothing it builds';
  if (postBuildHook !== undefined) {
    return [
      {
        severity: 'warning',
        message: `${signs} with secret-key-files, but its post-build-hook (${postBuildHook}) may sign after each build, so offload cannot tell whether the local store will take what ${host} builds`,
      },
    ];
  }
  return [
    {
      severity: 'unusable',
      message: `${signs}, and the local store takes paths from ${local.user} only with a trusted signature, so what ${host} builds cannot be copied back; to fix this, ${SIGNATURE_FIXES}`,
    },
  ];
}

/** The finding about the ssh user's own imports into the builder's store (`user` undefined: ssh's default). */
export function builderImportFindings(user: string | undefined, imports: UnsignedImports): Finding[] {
  if (imports.accepted) return [];
  const who = user === undefined ? 'the ssh user' : `the ssh user ${user}`;
  return [
    {
      severity: 'unusable',
      message:
        `its store refuses unsigned paths from ${who} (${imports.reason}), so it would refuse the inputs offload sends, ` +
        `and its nix-daemon refuses such a user builds of input-addressed derivations; add ${user ?? 'that user'} to trusted-users in its nix.conf, as Nix requires of a remote builder's user`,
    },
  ];
}
