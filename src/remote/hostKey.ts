import { createHash, timingSafeEqual } from 'node:crypto';
import { decodePublicHostKey } from '../config/publicHostKey.js';
import type { KnownHostKeys } from './knownHosts.js';
import { HostKeyMismatchError, UnknownHostKeyError } from './sshErrors.js';

/**
 * Host-key verification, pure: the pool hands over the key blob the server
 * offered during the handshake (before authentication and before any channel)
 * and what the machine and known_hosts say. Order, as with Nix:
 * 1. a pinned `publicHostKey` decides alone (known_hosts is not consulted);
 * 2. otherwise known_hosts: a listed key must match, a revoked key never does;
 * 3. otherwise the key is unknown: refused unless the user accepts unknown keys.
 */

/** The type an SSH public key blob declares in its first field. */
export function keyTypeOfBlob(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  if (length === 0 || 4 + length > blob.length) return undefined;
  return blob.subarray(4, 4 + length).toString('latin1');
}

/** OpenSSH's fingerprint format, as `ssh-keygen -l` prints it: `SHA256:` + unpadded base64. */
export function sha256Fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** `<type> <base64>`: a public key line for known_hosts or a .pub file. */
export function publicKeyLine(blob: Buffer): string {
  return `${keyTypeOfBlob(blob) ?? 'unknown'} ${blob.toString('base64')}`;
}

/** The machines-file `publicHostKey` value that pins exactly this key. */
export function publicHostKeyValue(blob: Buffer): string {
  return Buffer.from(publicKeyLine(blob), 'utf8').toString('base64');
}

const sameKey = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

export interface HostKeyPolicy {
  /** The machine's name, for messages. */
  host: string;
  address: string;
  port: number;
  /** The machine's `publicHostKey` (base64 of a key line), if pinned. */
  pinned?: string;
  /** What known_hosts lists for this host (see keysForHost). */
  known: KnownHostKeys;
  /** The known_hosts files that were read, for messages. */
  knownHostsFiles: string[];
  /** ssh_config StrictHostKeyChecking no/accept-new: accept a key nothing knows. */
  acceptUnknown: boolean;
}

export type HostKeyDecision =
  | { accepted: true; via: 'pinned' | 'known_hosts' | 'accepted unknown' }
  | { accepted: false; error: HostKeyMismatchError | UnknownHostKeyError };

export function checkHostKey(offered: Buffer, policy: HostKeyPolicy): HostKeyDecision {
  const offeredPrint = `${keyTypeOfBlob(offered) ?? 'unknown'} ${sha256Fingerprint(offered)}`;
  const mismatch = (expected: string[], source: string): HostKeyDecision => ({
    accepted: false,
    error: new HostKeyMismatchError(policy.host, policy.address, policy.port, offeredPrint, expected, source),
  });

  if (policy.pinned !== undefined) {
    const decoded = decodePublicHostKey(policy.pinned);
    if (!decoded.ok) return mismatch([`a readable key (its publicHostKey is ${decoded.reason})`], 'the machines file (publicHostKey)');
    if (sameKey(decoded.key.blob, offered)) return { accepted: true, via: 'pinned' };
    return mismatch([`${decoded.key.type} ${sha256Fingerprint(decoded.key.blob)}`], 'the machines file (publicHostKey)');
  }

  const revoked = policy.known.revoked.find((e) => sameKey(e.blob, offered));
  if (revoked) return mismatch(['any key but this one, which is marked @revoked'], revoked.source);
  if (policy.known.keys.some((e) => sameKey(e.blob, offered))) return { accepted: true, via: 'known_hosts' };
  if (policy.known.keys.length > 0) {
    const sources = [...new Set(policy.known.keys.map((e) => e.source))].join(', ');
    return mismatch(
      policy.known.keys.map((e) => `${e.keyType} ${sha256Fingerprint(e.blob)}`),
      `known_hosts (${sources})`,
    );
  }
  if (policy.acceptUnknown) return { accepted: true, via: 'accepted unknown' };
  return {
    accepted: false,
    error: new UnknownHostKeyError(
      policy.host,
      policy.address,
      policy.port,
      keyTypeOfBlob(offered) ?? 'unknown',
      sha256Fingerprint(offered),
      publicHostKeyValue(offered),
      policy.knownHostsFiles,
    ),
  };
}

/** ssh2's default server host key algorithms, in its order. */
const DEFAULT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

function algorithmsForKeyType(keyType: string): string[] {
  return keyType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [keyType];
}

/**
 * Host key algorithms to offer, the expected key types first, so a server with
 * several host keys presents the one we can check (as OpenSSH orders them by
 * known_hosts). Unknown types stay out; the rest keep ssh2's order.
 */
export function hostKeyAlgorithms(expectedKeyTypes: string[]): string[] {
  const preferred = expectedKeyTypes
    .flatMap(algorithmsForKeyType)
    .filter((algorithm) => DEFAULT_HOST_KEY_ALGORITHMS.includes(algorithm));
  return [...new Set([...preferred, ...DEFAULT_HOST_KEY_ALGORITHMS])];
}

/** Key types the policy expects (pinned or from known_hosts), for hostKeyAlgorithms. */
export function expectedKeyTypes(policy: Pick<HostKeyPolicy, 'pinned' | 'known'>): string[] {
  if (policy.pinned !== undefined) {
    const decoded = decodePublicHostKey(policy.pinned);
    return decoded.ok ? [decoded.key.type] : [];
  }
  return policy.known.keys.map((e) => e.keyType);
}
