import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NarFormatError, NarScanner } from '../../src/remote/narScanner.js';
import { Serializer } from '../../src/remote/serveCodec/serializer.js';
import { narBytes, type NarNode } from '../support/narBytes.js';

/** What a scanner made of `bytes` fed in `chunks`: the bytes it claimed from each chunk, or its error. */
interface Outcome {
  claimed: number[];
  done: boolean;
  size: number;
  error?: string;
}

function scan(bytes: Buffer, chunkSizes: (index: number) => number): Outcome {
  const scanner = new NarScanner();
  const claimed: number[] = [];
  try {
    for (let at = 0, index = 0; at < bytes.length && !scanner.done; index++) {
      // Each chunk is a copy, as from a socket: the scanner must not keep a view into one.
      const chunk = Buffer.from(bytes.subarray(at, at + Math.max(1, chunkSizes(index))));
      const taken = scanner.feed(chunk, 0);
      claimed.push(taken);
      at += taken;
      if (taken < chunk.length && !scanner.done) throw new Error('the scanner left bytes of a chunk without being done');
      chunk.fill(0xee);
    }
  } catch (error) {
    if (!(error instanceof NarFormatError)) throw error;
    return { claimed, done: scanner.done, size: scanner.size, error: error.message };
  }
  return { claimed, done: scanner.done, size: scanner.size };
}

/** Fed whole, byte by byte, and in chunks of 3, 7, 8, 13 and 4096 bytes. */
const CHUNKINGS: Array<[string, (index: number) => number]> = [
  ['whole', () => Number.MAX_SAFE_INTEGER],
  ['byte by byte', () => 1],
  ...[3, 7, 8, 13, 4096].map((n): [string, (index: number) => number] => [`${n}-byte chunks`, () => n]),
];

/** The NAR's bytes are claimed exactly, however they are cut, and bytes after it are left alone. */
function expectClaimedExactly(nar: Buffer): void {
  const trailing = Buffer.concat([nar, Buffer.from('not part of the NAR')]);
  for (const [, chunks] of CHUNKINGS) {
    const outcome = scan(trailing, chunks);
    expect(outcome.error).toBeUndefined();
    expect(outcome.done).toBe(true);
    expect(outcome.size).toBe(nar.length);
    expect(outcome.claimed.reduce((a, b) => a + b, 0)).toBe(nar.length);
  }
}

/** The NAR is refused with exactly `message`, however it is cut. */
function expectRefused(bytes: Buffer, message: string): void {
  for (const [how, chunks] of CHUNKINGS) {
    expect(scan(bytes, chunks).error, how).toBe(message);
  }
}

const file = (contents = 'x'): NarNode => ({ type: 'regular', contents: Buffer.from(contents) });
const directory = (...entries: [string | Buffer, NarNode][]): NarNode => ({ type: 'directory', entries });

/** A NAR written token by token, for shapes narBytes cannot make; `u64` entries are raw lengths. */
function tokens(...items: Array<string | Buffer | { u64: bigint }>): Buffer {
  const s = new Serializer();
  for (const item of items) {
    if (typeof item === 'string' || Buffer.isBuffer(item)) s.string(item);
    else s.u64(item.u64);
  }
  return s.flush();
}
const FILE_HEAD = ['nix-archive-1', '(', 'type', 'regular'];
const DIR_HEAD = ['nix-archive-1', '(', 'type', 'directory'];

describe('NarScanner: what it accepts', () => {
  it('claims exactly the bytes of files, executables, symlinks, empty files and nested directories, however they are cut', () => {
    expectClaimedExactly(narBytes(file('content\n')));
    expectClaimedExactly(narBytes(file('')));
    expectClaimedExactly(narBytes({ type: 'regular', contents: Buffer.from('#!/bin/sh\n'), executable: true }));
    expectClaimedExactly(narBytes({ type: 'symlink', target: '../a/b' }));
    expectClaimedExactly(narBytes(directory()));
    expectClaimedExactly(
      narBytes(
        directory(
          ['a', directory(['b', directory(['c', file('12345678')])])],
          ['bin', directory(['run', { type: 'regular', contents: Buffer.alloc(10_000, 7), executable: true }])],
          ['empty', file('')],
          ['link', { type: 'symlink', target: '/nix/store/x' }],
        ),
      ),
    );
  });

  it('claims the NAR of a directory of 20,000 small files (the benchmark shape) exactly', () => {
    const names = Array.from({ length: 20_000 }, (_, i) => `f${i}`).sort();
    const nar = narBytes(directory(...names.map((name, i): [string, NarNode] => [name, file(`nonce-${i}\n`)])));
    for (const size of [32 * 1024, 4093]) {
      const outcome = scan(nar, () => size);
      expect(outcome).toMatchObject({ done: true, size: nar.length });
      expect(outcome.claimed.reduce((a, b) => a + b, 0)).toBe(nar.length);
    }
  });

  it('orders names as unsigned bytes, a prefix before its extensions, each directory on its own', () => {
    expectClaimedExactly(narBytes(directory(['a', file()], ['ab', file()], ['z', file()], [Buffer.from([0xe9]), file()])));
    // The inner directory's last name (z) is not the one the outer "c" follows.
    expectClaimedExactly(narBytes(directory(['b', directory(['x', file()], ['z', file()])], ['c', file()])));
    expect(scan(narBytes(directory(['m', directory(['a', file()])], ['c', file()])), () => 5).error).toBe('the NAR directory entries are not sorted');
  });

  it('takes a name of 255 bytes and a symlink target of 4096', () => {
    expectClaimedExactly(narBytes(directory(['n'.repeat(255), file()])));
    expectClaimedExactly(narBytes({ type: 'symlink', target: 't'.repeat(4096) }));
  });

  it('says how many bytes of file contents are certain to come', () => {
    const scanner = new NarScanner();
    const nar = narBytes(file('0123456789'));
    const head = tokens(...FILE_HEAD, 'contents').length + 8;
    expect(scanner.feed(nar.subarray(0, head + 3), 0)).toBe(head + 3);
    expect(scanner.bytesAhead).toBe(7 + 6);
  });

  it('scans the same however a NAR is cut (property)', () => {
    const name = fc.stringMatching(/^[a-z0-9._-]{1,12}$/).filter((n) => n !== '.' && n !== '..');
    const node: fc.Arbitrary<NarNode> = fc.letrec<{ node: NarNode }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.record({ type: fc.constant('regular' as const), contents: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)), executable: fc.boolean() }),
        fc.record({ type: fc.constant('symlink' as const), target: fc.string({ minLength: 1, maxLength: 30 }) }),
        fc
          .uniqueArray(fc.tuple(name, tie('node')), { selector: ([n]) => n, maxLength: 5 })
          .map((entries): NarNode => ({ type: 'directory', entries: entries.sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))) })),
      ),
    })).node;
    fc.assert(
      fc.property(node, fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }), (tree, sizes) => {
        const nar = narBytes(tree);
        const outcome = scan(Buffer.concat([nar, Buffer.alloc(9, 1)]), (i) => sizes[i % sizes.length]!);
        expect(outcome).toMatchObject({ done: true, size: nar.length });
        expect(outcome.error).toBeUndefined();
      }),
    );
  });
});

describe('NarScanner: what it refuses, with the same error however the NAR is cut', () => {
  it('data that is not a NAR', () => {
    expectRefused(tokens('nix-archive-2', '('), 'the data is not a NAR (no nix-archive-1 header)');
    expectRefused(tokens('', '('), 'the data is not a NAR (no nix-archive-1 header)');
  });

  it('a node without "(", an unknown type, two types, a field that does not belong', () => {
    expectRefused(tokens('nix-archive-1', '[', 'type'), 'a NAR node or entry does not start with "("');
    expectRefused(tokens('nix-archive-1', '((', 'type'), 'a NAR node or entry does not start with "("');
    expectRefused(tokens('nix-archive-1', '(', 'type', 'fifo'), 'unknown NAR node type "fifo"');
    expectRefused(tokens('nix-archive-1', '(', 'type', 'x'.repeat(100)), `unknown NAR node type "${'x'.repeat(40)}"`);
    expectRefused(tokens(...FILE_HEAD, 'type', 'regular'), 'a NAR node has two type fields');
    expectRefused(tokens(...FILE_HEAD, 'target', 'x'), 'unexpected NAR field "target" in a regular node');
    expectRefused(tokens(...FILE_HEAD, 'entry', '('), 'unexpected NAR field "entry" in a regular node');
    expectRefused(tokens('nix-archive-1', '(', 'type', 'symlink', 'contents'), 'unexpected NAR field "contents" in a symlink node');
    expectRefused(tokens(...DIR_HEAD, 'contents'), 'unexpected NAR field "contents" in a directory node');
    expectRefused(tokens('nix-archive-1', '(', 'contents'), 'unexpected NAR field "contents" in a unknown node');
    expectRefused(tokens('nix-archive-1', '(', 'typ'), 'unexpected NAR field "typ" in a unknown node');
    expectRefused(tokens(...DIR_HEAD, 'entry', '(', 'nam'), 'unexpected NAR field "nam" in a directory entry');
    expectRefused(tokens(...DIR_HEAD, 'entry', '(', 'node', '('), 'a NAR directory entry has a node but no name');
    expectRefused(tokens(...FILE_HEAD, 'executable', 'x'), 'the NAR executable marker is not empty');
  });

  it('a file name that is empty, . or .., or holds / or NUL, quoted', () => {
    for (const [name, quoted] of [
      ['', '""'],
      ['.', '"."'],
      ['..', '".."'],
      ['a/b', '"a/b"'],
      [Buffer.from('a\0b', 'latin1'), '"a\\u0000b"'],
    ] as const) {
      expectRefused(narBytes(directory([name, file()])), `the NAR has an invalid file name ${quoted}`);
    }
    expectClaimedExactly(narBytes(directory(['...', file()], ['.a', file()], ['a..', file()])));
  });

  it('entries out of order or twice', () => {
    expectRefused(narBytes(directory(['b', file()], ['a', file()])), 'the NAR directory entries are not sorted');
    expectRefused(narBytes(directory(['a', file()], ['a', file()])), 'the NAR directory entries are not sorted');
    expectRefused(narBytes(directory(['ab', file()], ['a', file()])), 'the NAR directory entries are not sorted');
    expectRefused(narBytes(directory([Buffer.from([0xe9]), file()], ['z', file()])), 'the NAR directory entries are not sorted');
    // A second name in one entry follows its first.
    expectRefused(tokens(...DIR_HEAD, 'entry', '(', 'name', 'b', 'name', 'a'), 'the NAR directory entries are not sorted');
  });

  it('lengths beyond what a name, a token or a file can have', () => {
    expectRefused(narBytes(directory(['n'.repeat(256), file()])), 'a NAR token claims 256 bytes, more than the 255 allowed');
    expectRefused(tokens('nix-archive-1', '(', 'type', 'symlink', 'target', 't'.repeat(4097)), 'a NAR token claims 4097 bytes, more than the 4096 allowed');
    expectRefused(tokens('nix-archive-1', '(', { u64: 2n ** 32n + 1n }), 'a NAR token claims 4294967297 bytes, more than the 4096 allowed');
    expectRefused(tokens('nix-archive-1', '(', { u64: 2n ** 64n - 1n }), 'a NAR token claims 18446744073709551615 bytes, more than the 4096 allowed');
    expectRefused(tokens(...FILE_HEAD, 'contents', { u64: 2n ** 53n }), 'a NAR file claims an absurd length');
    expectRefused(tokens(...FILE_HEAD, 'contents', { u64: 2n ** 64n - 1n }), 'a NAR file claims an absurd length');
  });

  it('padding that is not zero, after a token or after file contents', () => {
    const good = narBytes(file('abc'));
    const magicPadding = 8 + 13;
    const contentsPadding = good.length - 8 - 8 - 5;
    for (const at of [magicPadding, contentsPadding]) {
      const bad = Buffer.from(good);
      bad[at] = 1;
      expectRefused(bad, 'the padding of a NAR string is not zero');
    }
  });

  it('a token that breaks the grammar is refused before its padding is looked at', () => {
    const bad = tokens('nix-archive-1', 'x');
    bad[bad.length - 1] = 1;
    expectRefused(bad, 'a NAR node or entry does not start with "("');
  });

  it('directories nested deeper than any file system allows, and no deeper', () => {
    // Built token by token: narBytes would recurse as deep as the NAR.
    const nested = (depth: number): Buffer => {
      const open = Array.from({ length: depth }, () => ['entry', '(', 'name', 'a', 'node', '(', 'type', 'directory']).flat();
      const close = Array.from({ length: depth }, () => [')', ')']).flat();
      return tokens('nix-archive-1', '(', 'type', 'directory', ...open, ')', ...close);
    };
    // The root's frame and two per level (entry and node): 4095 levels stay within 8192 frames.
    expectClaimedExactly(nested(4095));
    expect(scan(nested(4096), () => 4096).error).toBe('the NAR nests directories deeper than any file system allows');
  });
});
