import { createHmac, randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { publicKeyLine } from './hostKey.js';

/** `|1|salt|hmac`: the name as HashKnownHosts writes it (HMAC-SHA1 of the name keyed with a random salt). */
export function hashKnownHostsName(name: string, salt: Buffer = randomBytes(20)): string {
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
}

/**
 * Adds `name key` to a known_hosts file, as ssh does for a key it accepted
 * with StrictHostKeyChecking accept-new (or no): hashed with HashKnownHosts,
 * the directory created 0700 and the file 0600 when missing. The line goes
 * in with one O_APPEND write and is fsynced: readers never see half a line,
 * and two processes recording at once both keep theirs (a rename of a
 * rewritten copy would drop one of them).
 */
export async function recordHostKey(file: string, name: string, blob: Buffer, options: { hash: boolean }): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const handle = await open(file, 'a+', 0o600);
  try {
    const { size } = await handle.stat();
    let separator = '';
    if (size > 0) {
      const last = Buffer.alloc(1);
      await handle.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) separator = '\n';
    }
    await handle.write(`${separator}${options.hash ? hashKnownHostsName(name) : name} ${publicKeyLine(blob)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
