import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
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
