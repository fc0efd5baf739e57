/**
 * The pinned host key of a machine, as Nix stores it: base64 of a public key
 * line such as `ssh-ed25519 AAAAC3Nz... root@builder` (what
 * `base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub` prints).
 */
export const KNOWN_HOST_KEY_TYPES: readonly string[] = [
  'ssh-ed25519',
  'ssh-rsa',
  'ssh-dss',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];

export interface PublicHostKey {
  /** Key type, e.g. `ssh-ed25519`. */
  type: string;
  /** The decoded key blob: what an SSH server presents during the handshake. */
  blob: Buffer;
}

export type PublicHostKeyResult = { ok: true; key: PublicHostKey } | { ok: false; reason: string };

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function strictBase64(text: string): Buffer | undefined {
  if (!BASE64.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64');
  // Buffer.from skips garbage silently; a round trip proves nothing was skipped.
  return bytes.toString('base64').replace(/=+$/, '') === text.replace(/=+$/, '') ? bytes : undefined;
}

/** The type name an SSH key blob declares in its first field (uint32 length + string). */
function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  if (length === 0 || 4 + length > blob.length) return undefined;
  return blob.subarray(4, 4 + length).toString('latin1');
}

export function decodePublicHostKey(base64: string): PublicHostKeyResult {
  const outer = strictBase64(base64);
  if (!outer) return { ok: false, reason: 'not valid base64' };
  const line = outer.toString('utf8').replace(/\r?\n$/, '');
  if (line.includes('\n')) return { ok: false, reason: 'decodes to more than one line' };
  const [type, blobText] = line.trim().split(/\s+/);
  if (!type || !blobText) return { ok: false, reason: 'does not decode to a "<type> <base64 key>" line' };
  if (!KNOWN_HOST_KEY_TYPES.includes(type)) return { ok: false, reason: `unknown key type "${type.slice(0, 40)}"` };
  const blob = strictBase64(blobText);
  if (!blob) return { ok: false, reason: `the ${type} key is not valid base64` };
  const declared = blobType(blob);
  if (declared !== type) return { ok: false, reason: `the key data is not a ${type} key` };
  return { ok: true, key: { type, blob } };
}
