import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { NarScanner } from '../../src/remote/narScanner.js';
import { ServeReader } from '../../src/remote/serveCodec/parser.js';
import { Serializer } from '../../src/remote/serveCodec/serializer.js';
import { streamChunks } from '../../src/remote/streamChunks.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A NAR of one regular file of `size` bytes. */
function narOf(size: number): Buffer {
  const s = new Serializer();
  for (const token of ['nix-archive-1', '(', 'type', 'regular', 'contents']) s.string(token);
  s.string(Buffer.alloc(size, 0x61));
  s.string(')');
  return s.flush();
}

describe('streamChunks', () => {
  it('hands over every queued chunk at once', async () => {
    const stream = new PassThrough();
    const chunks = streamChunks(stream);
    const first = chunks.next();
    stream.write(Buffer.from('a'));
    expect((await first).value).toEqual([Buffer.from('a')]);
    stream.write(Buffer.from('b'));
    stream.write(Buffer.from('c'));
    await tick();
    expect((await chunks.next()).value).toEqual([Buffer.from('b'), Buffer.from('c')]);
    stream.end();
    expect((await chunks.next()).done).toBe(true);
  });

  it('waits for the bytes a reader knows are coming, and not past the end of the stream', async () => {
    const stream = new PassThrough();
    const chunks = streamChunks(stream);
    let settled = false;
    const batch = chunks.next(300).then((result) => {
      settled = true;
      return result;
    });
    for (let i = 0; i < 2; i++) {
      stream.write(Buffer.alloc(100));
      await tick();
    }
    expect(settled).toBe(false);
    stream.write(Buffer.alloc(100));
    expect((await batch).value).toHaveLength(3);
    const rest = chunks.next(1000);
    stream.end(Buffer.alloc(10));
    expect((await rest).value).toEqual([Buffer.alloc(10)]);
    expect((await chunks.next(1000)).done).toBe(true);
  });

  it('pauses the stream past its queue limit, and a waiting reader gets the queue then', async () => {
    const stream = new PassThrough({ highWaterMark: 16 * 1024 * 1024 });
    const chunks = streamChunks(stream);
    const size = (batch: Buffer[] | undefined) => (batch ?? []).reduce((sum, b) => sum + b.length, 0);
    // Far more than the queue may hold: the reader gets what is queued once the stream pauses.
    const batch = chunks.next(64 * 1024 * 1024);
    for (let i = 0; i < 40; i++) stream.write(Buffer.alloc(32 * 1024));
    const first = size((await batch).value);
    expect(first).toBeGreaterThanOrEqual(1024 * 1024);
    expect(first).toBeLessThan(1024 * 1024 + 64 * 1024);
    // Taking the queue resumed the stream: the rest arrives.
    stream.end();
    let rest = 0;
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) rest += size(next.value);
    expect(first + rest).toBe(40 * 32 * 1024);
  });
});

describe('ServeReader.scanBatches', () => {
  it('passes a NAR through in batches, stops at its end, and leaves what follows for the next read', async () => {
    const nar = narOf(1024 * 1024);
    const stream = new PassThrough();
    const reader = new ServeReader(streamChunks(stream), 'a test stream');
    const feeding = (async () => {
      const bytes = Buffer.concat([nar, new Serializer().u64(42).flush()]);
      for (let at = 0; at < bytes.length; at += 32 * 1024) {
        stream.write(bytes.subarray(at, at + 32 * 1024));
        await tick();
      }
    })();
    const batches: Buffer[][] = [];
    for await (const batch of reader.scanBatches(new NarScanner(), 'the NAR')) batches.push(batch);
    await feeding;
    expect(Buffer.concat(batches.flat()).equals(nar)).toBe(true);
    // 33 chunks of 32 KiB; waiting for the file's known bytes gathers them into a few batches.
    expect(batches.length).toBeLessThan(10);
    expect(await reader.u64('what follows')).toBe(42);
  });

  it('turns a NAR that breaks the grammar into a protocol error naming the peer', async () => {
    const reader = new ServeReader([new Serializer().string('not-a-nar').flush()], 'nix-store --serve on liar');
    const batches = reader.scanBatches(new NarScanner(), 'the NAR');
    await expect(batches.next()).rejects.toThrow(/Bad data from nix-store --serve on liar at byte 0: the data is not a NAR/);
  });
});
