import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkedNar } from '../../src/remote/narCheck.js';
import { toNixBase32 } from '../../src/storePath/nixHash.js';
import type { PathInfo } from '../../src/remote/serveCodec/messages.js';
import { UntrustedReplyError } from '../../src/remote/untrustedReplyError.js';

const PATH = '/nix/store/avbb1da2h2j2zxv2wqajs13r57j6i787-out';

function infoFor(bytes: Buffer, overrides: Partial<PathInfo> = {}): PathInfo {
  return {
    path: PATH,
    references: [],
    downloadSize: bytes.length,
    narSize: bytes.length,
    narHash: `sha256:${toNixBase32(createHash('sha256').update(bytes).digest())}`,
    sigs: [],
    ...overrides,
  };
}

async function* chunksOf(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/** What a receiver got before the check stopped it, and the error. */
async function receive(bytes: Buffer, info: PathInfo, chunk = 1000): Promise<{ received: number; error?: unknown }> {
  let received = 0;
  try {
    for await (const batch of checkedNar(chunksOf(bytes, chunk), info, 'liar', { hash: true })) for (const part of batch) received += part.length;
  } catch (error) {
    return { received, error };
  }
  return { received };
}

describe('checkedNar', () => {
  const bytes = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));

  it('passes a NAR that matches its info through unchanged', async () => {
    const out: Buffer[] = [];
    for await (const batch of checkedNar(chunksOf(bytes, 999), infoFor(bytes), 'honest', { hash: true })) out.push(...batch);
    expect(Buffer.concat(out).equals(bytes)).toBe(true);
  });

  it('accepts a base16 NAR hash too', async () => {
    const hex = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    expect((await receive(bytes, infoFor(bytes, { narHash: hex }))).error).toBeUndefined();
  });

  it('holds the last chunk back when the hash differs, so the receiver never has the whole NAR', async () => {
    const tampered = Buffer.from(bytes);
    tampered[5000] = tampered[5000]! ^ 1;
    const { received, error } = await receive(tampered, infoFor(bytes));
    expect(error).toBeInstanceOf(UntrustedReplyError);
    expect((error as Error).message).toMatch(/liar cannot be trusted: its NAR does not have the hash .* \(\/nix\/store\/avbb.*-out\)/);
    expect(received).toBe(bytes.length - 1000);
  });

  it('stops a NAR longer than its info says before passing the extra bytes on', async () => {
    const { received, error } = await receive(Buffer.concat([bytes, Buffer.alloc(8)]), infoFor(bytes));
    expect((error as Error).message).toMatch(/more NAR bytes than the 10000 its path info gives/);
    expect(received).toBeLessThan(bytes.length);
  });

  it('refuses a NAR shorter than its info says, keeping its last chunk back', async () => {
    const { received, error } = await receive(bytes.subarray(0, 9000), infoFor(bytes));
    expect((error as Error).message).toMatch(/its NAR has 9000 bytes where its path info gives 10000/);
    expect(received).toBe(8000);
  });

  it('refuses a path info whose NAR hash is not SHA-256', async () => {
    const { error } = await receive(bytes, infoFor(bytes, { narHash: 'md5:abc' }));
    expect((error as Error).message).toMatch(/is not a SHA-256 hash/);
  });

  it('checks only the size when no hash is wanted (a trusted source)', async () => {
    let received = 0;
    for await (const batch of checkedNar(chunksOf(bytes, 999), infoFor(bytes, { narHash: 'sha256:0' }), 'local', { hash: false })) for (const part of batch) received += part.length;
    expect(received).toBe(bytes.length);
  });
});
