import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { keysForHost, parseKnownHosts } from '../../src/remote/knownHosts.js';
import { recordHostKey } from '../../src/remote/recordHostKey.js';
import { ED25519 } from './hostKeyFixtures.js';

const blob = Buffer.from(ED25519.line.split(' ')[1]!, 'base64');

describe('recordHostKey (accept-new)', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('creates the folder 0700 and the file 0600, and appends after a last line without a newline', async () => {
    dir = mkdtempSync(join(tmpdir(), 'record-host-key-'));
    const file = join(dir, 'ssh', 'known_hosts');
    await recordHostKey(file, '[127.0.0.1]:2222', blob, { hash: false });
    expect(statSync(join(dir, 'ssh')).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toBe(`[127.0.0.1]:2222 ${ED25519.line}\n`);
    const other = join(dir, 'other');
    writeFileSync(other, `old ${ED25519.line}`);
    await recordHostKey(other, 'new', blob, { hash: false });
    expect(readFileSync(other, 'utf8')).toBe(`old ${ED25519.line}\nnew ${ED25519.line}\n`);
  });

  it('hashes the name as HashKnownHosts does, so the lookup finds it under that name only', async () => {
    dir = mkdtempSync(join(tmpdir(), 'record-host-key-'));
    const file = join(dir, 'known_hosts');
    await recordHostKey(file, '[127.0.0.1]:2222', blob, { hash: true });
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^\|1\|[A-Za-z0-9+/=]+\|[A-Za-z0-9+/=]+ ssh-ed25519 /);
    expect(text).not.toContain('127.0.0.1');
    const entries = parseKnownHosts(text, file);
    expect(keysForHost(entries, ['[127.0.0.1]:2222']).keys).toHaveLength(1);
    expect(keysForHost(entries, ['[127.0.0.1]:2223']).keys).toHaveLength(0);
  });
});
