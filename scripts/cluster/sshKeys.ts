import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Creates an unencrypted ed25519 key pair; returns the public line `<type> <base64>` without comment. */
export async function generateKey(privateKeyFile: string, comment: string): Promise<string> {
  // ssh-keygen asks before overwriting, which would hang a reused cluster folder.
  await Promise.all([rm(privateKeyFile, { force: true }), rm(`${privateKeyFile}.pub`, { force: true })]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', privateKeyFile]);
  const publicLine = await readFile(`${privateKeyFile}.pub`, 'utf8');
  const [type, blob] = publicLine.trim().split(/\s+/);
  if (!type || !blob) throw new Error(`ssh-keygen wrote an unreadable public key to ${privateKeyFile}.pub`);
  return `${type} ${blob}`;
}

/**
 * A Nix signing key pair in `folder` (the builder's etc-nix, its /etc/nix):
 * signing-key.sec (0600) for secret-key-files, signing-key.pub. Returns the
 * public key, `name:base64`, as trusted-public-keys lists it.
 */
export async function generateSigningKey(name: string, folder: string): Promise<string> {
  const secret = join(folder, 'signing-key.sec');
  const pub = join(folder, 'signing-key.pub');
  await Promise.all([rm(secret, { force: true }), rm(pub, { force: true })]);
  await run('nix-store', ['--generate-binary-cache-key', name, secret, pub]);
  const key = (await readFile(pub, 'utf8')).trim();
  if (!key.startsWith(`${name}:`)) throw new Error(`nix-store --generate-binary-cache-key wrote an unexpected public key to ${basename(pub)}`);
  return key;
}
