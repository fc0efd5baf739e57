import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { exportStreamFrom, type ExportedPath } from '../../src/remote/exportStream.js';
import { ServeProtocolError } from '../../src/remote/serveCodec/errors.js';
import { ServeReader } from '../../src/remote/serveCodec/parser.js';
import { Serializer } from '../../src/remote/serveCodec/serializer.js';
import { scanExportStream } from '../../src/remote/exportStream.js';
import { chunked } from './chunkedStream.js';
import { narBytes, type NarNode } from '../support/narBytes.js';

const HASH = 'avbb1da2h2j2zxv2wqajs13r57j6i787';
const storePath = (name: string) => `/nix/store/${HASH}-${name}`;

interface Item {
  nar: Buffer;
  path: string;
  references?: string[];
  deriver?: string;
  signature?: string;
}

function trailer(item: Item): Buffer {
  const s = new Serializer().u64(0x4558494e).string(item.path).strings(item.references ?? []).string(item.deriver ?? '');
  if (item.signature === undefined) s.u64(0);
  else s.u64(1).string(item.signature);
  return s.flush();
}

function exportOf(items: Item[]): Buffer {
  const parts: Buffer[] = [];
  for (const item of items) parts.push(new Serializer().u64(1).flush(), item.nar, trailer(item));
  parts.push(new Serializer().u64(0).flush());
  return Buffer.concat(parts);
}

async function scanAll(bytes: Buffer, cuts?: number[]): Promise<{ out: Buffer; paths: ExportedPath[] }> {
  const paths: ExportedPath[] = [];
  const parts: Buffer[] = [];
  for await (const chunk of exportStreamFrom(chunked(bytes, cuts), 'a test export', { onPath: (p) => paths.push(p) })) {
    parts.push(chunk);
  }
  return { out: Buffer.concat(parts), paths };
}

const tree: NarNode = {
  type: 'directory',
  entries: [
    ['bin', { type: 'directory', entries: [['hello', { type: 'regular', contents: Buffer.from('#!/bin/sh\n'), executable: true }]] }],
    ['lib', { type: 'symlink', target: '/nix/store/other/lib' }],
    ['share', { type: 'regular', contents: Buffer.alloc(0) }],
  ],
};

const nodeArb: fc.Arbitrary<NarNode> = fc.letrec<{ node: NarNode }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ type: fc.constant('regular' as const), contents: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), executable: fc.boolean() }),
    fc.record({ type: fc.constant('symlink' as const), target: fc.string({ minLength: 1, maxLength: 20 }) }),
    fc.record({
      type: fc.constant('directory' as const),
      entries: fc
        .uniqueArray(fc.stringMatching(/^[a-z0-9._-]{1,8}$/).filter((n) => n !== '.' && n !== '..'), { maxLength: 4 })
        .chain((names) => fc.tuple(...names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))).map((n) => fc.tuple(fc.constant(n), tie('node'))))),
    }),
  ),
})).node;

describe('scanExportStream', () => {
  it('passes a hand-built export stream through unchanged and reports each path', async () => {
    const items: Item[] = [
      { nar: narBytes({ type: 'regular', contents: Buffer.from('content\n') }), path: storePath('a'), deriver: storePath('a.drv') },
      { nar: narBytes(tree), path: storePath('b'), references: [storePath('a'), storePath('b')], signature: 'legacy' },
    ];
    const bytes = exportOf(items);
    const { out, paths } = await scanAll(bytes, [1, 5, 100, 101, 250]);
    expect(out.equals(bytes)).toBe(true);
    expect(paths).toEqual([
      { path: storePath('a'), references: [], deriver: storePath('a.drv'), narSize: items[0]!.nar.length },
      { path: storePath('b'), references: [storePath('a'), storePath('b')], narSize: items[1]!.nar.length },
    ]);
  });

  it('accepts the empty export stream (just the final 0)', async () => {
    const { out, paths } = await scanAll(new Serializer().u64(0).flush());
    expect(out.length).toBe(8);
    expect(paths).toEqual([]);
  });

  it('stops exactly at the end of the stream, leaving what follows to the next reader', async () => {
    const bytes = Buffer.concat([exportOf([{ nar: narBytes(tree), path: storePath('b') }]), new Serializer().u64(42).flush()]);
    const reader = new ServeReader(chunked(bytes, [7, 64]), 'x');
    let size = 0;
    for await (const chunk of scanExportStream(reader)) size += chunk.length;
    expect(size).toBe(bytes.length - 8);
    expect(await reader.u64('next reply')).toBe(42);
  });

  it('round-trips random NAR trees under random chunking', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(nodeArb, { minLength: 1, maxLength: 3 }), fc.array(fc.nat()), async (nodes, cuts) => {
        const bytes = exportOf(nodes.map((node, i) => ({ nar: narBytes(node), path: storePath(`p${i}`) })));
        const { out, paths } = await scanAll(bytes, cuts);
        expect(out.equals(bytes)).toBe(true);
        expect(paths.map((p) => p.path)).toEqual(nodes.map((_, i) => storePath(`p${i}`)));
      }),
      { numRuns: 200 },
    );
  });

  it('ends random, truncated and mutated input in a ServeProtocolError, never another exception or a hang', async () => {
    const valid = exportOf([
      { nar: narBytes(tree), path: storePath('b'), references: [storePath('a')], deriver: storePath('b.drv') },
      { nar: narBytes({ type: 'regular', contents: Buffer.from('x') }), path: storePath('c'), signature: 's' },
    ]);
    const inputs = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => ({ bytes: Buffer.from(a), truncated: false })),
      fc.nat({ max: valid.length - 1 }).map((n) => ({ bytes: valid.subarray(0, n), truncated: true })),
      fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
        const copy = Buffer.from(valid);
        copy[i] = (copy[i] as number) ^ x;
        return { bytes: copy, truncated: false };
      }),
    );
    await fc.assert(
      fc.asyncProperty(inputs, fc.array(fc.nat()), async ({ bytes, truncated }, cuts) => {
        let failed = false;
        try {
          const { out } = await scanAll(bytes, cuts);
          // A mutation inside file contents or a name can still be a valid stream.
          expect(out.equals(bytes)).toBe(true);
        } catch (error) {
          failed = true;
          expect(error).toBeInstanceOf(ServeProtocolError);
        }
        if (truncated) expect(failed).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it.each([
    ['a wrong path marker', (b: Buffer) => b.writeUInt8(2, 0), /path marker is 2/],
    ['no NAR header', (b: Buffer) => b.write('nix-archive-2', 16), /not a NAR/],
    ['a wrong NIXE marker', (b: Buffer) => b.write('NIXF', 0x80), /NIXE/],
    ['a path outside the store', (b: Buffer) => b.write('/tmp/', 0x90), /is not a store path/],
  ])('rejects %s', async (_, mutate, message) => {
    const bytes = exportOf([{ nar: narBytes({ type: 'regular', contents: Buffer.from('content\n') }), path: storePath('exp-a') }]);
    mutate(bytes);
    await expect(scanAll(bytes)).rejects.toThrow(message);
  });

  it('rejects unsorted or invalid directory entry names like Nix does', async () => {
    const file: NarNode = { type: 'regular', contents: Buffer.from('x') };
    for (const entries of [[['b', file], ['a', file]], [['a', file], ['a', file]], [['..', file]], [['a/b', file]]] as [string, NarNode][][]) {
      const bytes = exportOf([{ nar: narBytes({ type: 'directory', entries }), path: storePath('d') }]);
      await expect(scanAll(bytes)).rejects.toThrow(/not sorted|invalid file name/);
    }
  });

  it('rejects trailing bytes after a whole export stream', async () => {
    const bytes = Buffer.concat([new Serializer().u64(0).flush(), Buffer.from([1])]);
    await expect(scanAll(bytes)).rejects.toThrow(/bytes follow the end/);
  });

  it('streams a 20 MB file in 64 KiB chunks with a small, flat buffer', async () => {
    const size = 20 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) & 0xff;
    const header = new Serializer().u64(1).string('nix-archive-1').string('(').string('type').string('regular').string('contents').u64(size).flush();
    const footer = Buffer.concat([new Serializer().string(')').flush(), trailer({ path: storePath('big'), nar: Buffer.alloc(0) }), new Serializer().u64(0).flush()]);
    const inputHash = createHash('sha256');
    async function* source(): AsyncGenerator<Buffer> {
      yield header;
      inputHash.update(header);
      for (let sent = 0; sent < size; sent += chunk.length) {
        inputHash.update(chunk);
        yield chunk;
      }
      inputHash.update(footer);
      yield footer;
    }
    const reader = new ServeReader(source(), 'a big export');
    const outputHash = createHash('sha256');
    let largestChunk = 0;
    let total = 0;
    const paths: ExportedPath[] = [];
    for await (const out of scanExportStream(reader, { onPath: (p) => paths.push(p) })) {
      outputHash.update(out);
      total += out.length;
      largestChunk = Math.max(largestChunk, out.length);
    }
    expect(total).toBe(header.length + size + footer.length);
    expect(outputHash.digest('hex')).toBe(inputHash.digest('hex'));
    expect(reader.maxBuffered).toBeLessThanOrEqual(2 * chunk.length);
    expect(largestChunk).toBeLessThanOrEqual(2 * chunk.length);
    expect(paths[0]?.narSize).toBe(header.length - 8 + size + 16);
  });
});
