import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { NarInfo } from './narinfo.js';

/**
 * Narinfo signatures, checked exactly as Nix checks them
 * (ValidPathInfo::checkSignatures): an ed25519 signature by a key named in
 * `trusted-public-keys` over the fingerprint
 * `1;<storePath>;<narHash base32>;<narSize>;<references, comma-separated>`.
 * One valid signature from a trusted key is enough.
 */
export function fingerprint(info: Pick<NarInfo, 'storePath' | 'narHash' | 'narSize' | 'references'>): string {
  return `1;${info.storePath};${info.narHash};${info.narSize};${info.references.join(',')}`;
}

/** `trusted-public-keys`, parsed: key name → ed25519 public key. */
export type TrustedKeys = ReadonlyMap<string, KeyObject>;

/**
 * Parses `name:base64` keys. A malformed key is reported and skipped rather
 * than failing the run: Nix does the same (it then trusts nothing it signed).
 */
export function parseTrustedKeys(keys: readonly string[], warn: (message: string) => void): TrustedKeys {
  const out = new Map<string, KeyObject>();
  for (const key of keys) {
    const colon = key.indexOf(':');
    const raw = colon > 0 ? Buffer.from(key.slice(colon + 1), 'base64') : Buffer.alloc(0);
    if (colon <= 0 || raw.length !== 32) {
      warn(`trusted public key ${JSON.stringify(key.slice(0, 80))} is not "name:<base64 of 32 bytes>"; it is ignored`);
      continue;
    }
    out.set(key.slice(0, colon), createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' }));
  }
  return out;
}

/** True when one of `info.sigs` is a valid signature by a trusted key. */
export function hasTrustedSignature(info: Pick<NarInfo, 'storePath' | 'narHash' | 'narSize' | 'references' | 'sigs'>, keys: TrustedKeys): boolean {
  if (info.sigs.length === 0 || keys.size === 0) return false;
  const message = Buffer.from(fingerprint(info));
  for (const sig of info.sigs) {
    const colon = sig.indexOf(':');
    if (colon <= 0) continue;
    const key = keys.get(sig.slice(0, colon));
    if (!key) continue;
    const bytes = Buffer.from(sig.slice(colon + 1), 'base64');
    if (bytes.length !== 64) continue;
    if (verify(null, message, key, bytes)) return true;
  }
  return false;
}
