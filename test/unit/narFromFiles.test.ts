import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type * as NodeFs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { LocalNarError } from '../../src/remote/localNarError.js';
import { NAR_CHUNK, NarBufferPool, narFromFiles } from '../../src/store/narFromFiles.js';
import { openOn } from '../support/openDescriptors.js';

/** File bytes narFromFiles has read so far, and the files it opened. */
const read = vi.hoisted(() => ({ bytes: 0, opened: [] as string[] }));
vi.mock('node:fs', async (original) => {
  const fs = await original<typeof NodeFs>();
  const readSync = (...args: Parameters<typeof fs.readSync>) => {
    const n = fs.readSync(...args);
    read.bytes += n;
    return n;
  };
  const openSync = (...args: Parameters<typeof fs.openSync>) => {
    read.opened.push(args[0].toString());
    return fs.openSync(...args);
  };
  return { ...fs, default: { ...fs, readSync, openSync }, readSync, openSync };
});

const root = mkdtempSync(join(tmpdir(), 'offload-narfiles-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What Nix itself writes for the tree at `path`. */
function nixDump(path: string): Buffer {
  return execFileSync('nix-store', ['--dump', path], { maxBuffer: 64 * 1024 * 1024 });
}

async function collect(path: string, narSize: number): Promise<{ bytes: Buffer; chunks: Buffer[] }> {
  const chunks: Buffer[] = [];
  for (const chunk of narFromFiles(path, '/nix/store/00000000000000000000000000000000-x', narSize)) chunks.push(chunk);
  return { bytes: Buffer.concat(chunks), chunks };
}

let counter = 0;
/** A fresh directory for one fixture tree, filled by `make`. */
function tree(make: (dir: string) => void): string {
  const dir = join(root, `t${counter++}`);
  make(dir);
  return dir;
}

function random(size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 65536) createHash('sha256').update(String(i)).digest().copy(out, i);
  return out;
}

const fixtures: [string, (dir: string) => void][] = [
  ['a regular file', (d) => writeFileSync(d, 'hello\n')],
  ['an empty file', (d) => writeFileSync(d, '')],
  ['a file of exactly 8 bytes (no padding)', (d) => writeFileSync(d, '12345678')],
  [
    'an executable file',
    (d) => {
      writeFileSync(d, '#!/bin/sh\necho hi\n');
      chmodSync(d, 0o755);
    },
  ],
  ['a symlink', (d) => symlinkSync('../some/where else', d)],
  ['an empty directory', (d) => mkdirSync(d)],
  [
    'nested directories with every kind of entry',
    (d) => {
      mkdirSync(join(d, 'bin'), { recursive: true });
      mkdirSync(join(d, 'share/doc/deep/er'), { recursive: true });
      mkdirSync(join(d, 'empty'));
      writeFileSync(join(d, 'bin/tool'), 'tool');
      chmodSync(join(d, 'bin/tool'), 0o555);
      writeFileSync(join(d, 'share/doc/README'), 'read me');
      writeFileSync(join(d, 'share/doc/deep/er/leaf'), '');
      symlinkSync('bin/tool', join(d, 'link'));
      symlinkSync('/nonexistent/dangling', join(d, 'share/dangling'));
    },
  ],
  [
    'names whose byte order differs from the locale',
    (d) => {
      mkdirSync(d);
      for (const name of ['b', 'B', 'a', 'A', '_x', 'Z', '-dash', '.hidden', '10', '9', 'é', 'e', 'z', '~', 'ab', 'a b']) writeFileSync(join(d, name), name);
      // A name that is not UTF-8: a NAR's names are bytes.
      writeFileSync(Buffer.concat([Buffer.from(d), Buffer.from('/'), Buffer.from([0x66, 0xff, 0x80])]), 'raw');
    },
  ],
  [
    'a large file spanning several chunks, next to small ones',
    (d) => {
      mkdirSync(d);
      writeFileSync(join(d, 'a-small'), 'x');
      writeFileSync(join(d, 'big'), random(2 * NAR_CHUNK + 12345));
      writeFileSync(join(d, 'c-exactly-a-chunk'), random(NAR_CHUNK));
      writeFileSync(join(d, 'd-after'), 'after');
    },
  ],
];

describe('narFromFiles', () => {
  it.each(fixtures)('writes the NAR nix-store --dump writes: %s', async (_, make) => {
    const path = tree(make);
    const expected = nixDump(path);
    const { bytes, chunks } = await collect(path, expected.length);
    expect(bytes.equals(expected)).toBe(true);
    for (const chunk of chunks) expect(chunk.length).toBeLessThanOrEqual(NAR_CHUNK);
  });

  it('a tree larger than the recorded NAR size fails before its end is handed on', async () => {
    const path = tree((d) => writeFileSync(d, random(3 * NAR_CHUNK)));
    const size = nixDump(path).length;
    const handed: number[] = [];
    const run = async () => {
      for (const chunk of narFromFiles(path, '/nix/store/00000000000000000000000000000000-x', size - 8)) handed.push(chunk.length);
    };
    await expect(run()).rejects.toThrow(LocalNarError);
    expect(handed.reduce((a, b) => a + b, 0)).toBeLessThan(size);
  });

  it('a tree smaller than the recorded NAR size fails without handing on its last bytes', async () => {
    const path = tree((d) => writeFileSync(d, 'short'));
    const size = nixDump(path).length;
    const handed: Buffer[] = [];
    const run = async () => {
      for (const chunk of narFromFiles(path, '/nix/store/00000000000000000000000000000000-x', size + 8)) handed.push(chunk);
    };
    await expect(run()).rejects.toThrow(/makes? a NAR of \d+ bytes, not the/);
    expect(handed).toEqual([]);
  });

  it('a path that is gone, or a file type a NAR cannot hold, is a LocalNarError naming the store path', async () => {
    await expect(collect(join(root, 'missing'), 100)).rejects.toThrow(LocalNarError);
    const fifo = tree((d) => {
      mkdirSync(d);
      execFileSync('mkfifo', [join(d, 'pipe')]);
    });
    await expect(collect(fifo, 1000)).rejects.toThrow(/\/nix\/store\/0{32}-x .*neither a regular file, a directory nor a symlink/);
  });

  it('reads no further ahead than the buffer it hands on: a slow consumer holds the source back', async () => {
    // A sparse file: 32 MiB that cost no disk, read at memory speed.
    const path = tree((d) => {
      const fd = openSync(d, 'w');
      ftruncateSync(fd, 32 * 1024 * 1024);
      closeSync(fd);
    });
    const expected = await new Promise<{ digest: string; size: number }>((resolve, reject) => {
      const child = spawn('nix-store', ['--dump', path], { stdio: ['ignore', 'pipe', 'inherit'] });
      const hash = createHash('sha256');
      let size = 0;
      child.stdout.on('data', (d: Buffer) => {
        hash.update(d);
        size += d.length;
      });
      child.on('error', reject);
      child.on('close', () => resolve({ digest: hash.digest('hex'), size }));
    });
    read.bytes = 0;
    const hash = createHash('sha256');
    let size = 0;
    for (const chunk of narFromFiles(path, '/nix/store/00000000000000000000000000000000-x', expected.size)) {
      expect(chunk.length).toBeLessThanOrEqual(NAR_CHUNK);
      // Everything read so far is in this chunk or was handed on before it.
      expect(read.bytes).toBeLessThanOrEqual(size + chunk.length);
      hash.update(chunk);
      size += chunk.length;
    }
    expect({ digest: hash.digest('hex'), size }).toEqual(expected);
    expect(read.bytes).toBe(32 * 1024 * 1024);
  });

  it('fills buffers given back to its pool again, and the NAR stays exact', async () => {
    const path = tree((d) => writeFileSync(d, random(5 * NAR_CHUNK + 77)));
    const expected = nixDump(path);
    const pool = new NarBufferPool();
    const seen = new Set<ArrayBufferLike>();
    const parts: Buffer[] = [];
    for (const chunk of narFromFiles(path, '/nix/store/00000000000000000000000000000000-x', expected.length, { pool })) {
      if (chunk.length === NAR_CHUNK) seen.add(chunk.buffer);
      parts.push(Buffer.from(chunk));
      // Written: the consumer gives it back at once, so two full buffers take turns (the last, shorter one is its own).
      pool.give(chunk);
    }
    expect(Buffer.concat(parts).equals(expected)).toBe(true);
    expect(seen.size).toBeLessThanOrEqual(2);
  });

  it('opens each file once, and closes it when the consumer stops early or a read fails', () => {
    const path = tree((d) => {
      mkdirSync(d);
      writeFileSync(join(d, 'big'), random(5 * NAR_CHUNK + 77));
      writeFileSync(join(d, 'small'), 'small');
    });
    const big = join(path, 'big');
    const size = nixDump(path).length;
    read.opened.length = 0;
    for (const _ of narFromFiles(path, '/nix/store/00000000000000000000000000000000-x', size));
    expect(read.opened).toEqual([big, join(path, 'small')]);

    // Stopped after two buffers, while the big file was half read: for-of's break returns the generator.
    let handed = 0;
    for (const _ of narFromFiles(path, '/nix/store/00000000000000000000000000000000-x', size)) {
      expect(openOn(big)).toBe(1);
      if (++handed === 2) break;
    }
    expect(openOn(big)).toBe(0);

    // A consumer that throws midway.
    expect(() => {
      for (const _ of narFromFiles(path, '/nix/store/00000000000000000000000000000000-x', size)) throw new Error('consumer failed');
    }).toThrow('consumer failed');
    expect(openOn(big)).toBe(0);

    // A read that fails: the tree is larger than the recorded size.
    expect(() => {
      for (const _ of narFromFiles(path, '/nix/store/00000000000000000000000000000000-x', 2 * NAR_CHUNK));
    }).toThrow(LocalNarError);
    expect(openOn(big)).toBe(0);
  });

  it('keeps only buffers of its own size, and only as many as it was told', () => {
    const pool = new NarBufferPool(1);
    const a = pool.take();
    const b = pool.take();
    expect(a.length).toBe(NAR_CHUNK);
    pool.give(Buffer.alloc(100));
    pool.give(a.subarray(0, 10));
    pool.give(b);
    expect(pool.take().buffer).toBe(a.buffer);
    expect(pool.take().buffer).not.toBe(b.buffer);
  });
});
