import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ServeProtocolError, ServeStreamEndedError } from '../../src/remote/serveCodec/errors.js';
import { MAX_STRING_LENGTH, ServeReader } from '../../src/remote/serveCodec/parser.js';
import { Serializer } from '../../src/remote/serveCodec/serializer.js';
import { chunked } from './chunkedStream.js';

const reader = (bytes: Buffer, cuts?: number[]) => new ServeReader(chunked(bytes, cuts), 'a test stream');

describe('Serializer', () => {
  it('writes u64 little-endian and strings padded to 8 with zeros', () => {
    const out = new Serializer(4).u64(0x390c9deb).string('abc').flush();
    expect(out.toString('hex')).toBe('eb9d0c3900000000' + '0300000000000000' + '6162630000000000');
  });

  it('writes an empty string as its length only', () => {
    expect(new Serializer().string('').flush().toString('hex')).toBe('0000000000000000');
  });

  it('writes lists and maps as a count followed by the items', () => {
    const out = new Serializer().strings(['12345678']).stringMap([['k', 'v']]).flush();
    expect(out.toString('hex')).toBe(
      '0100000000000000' + '0800000000000000' + Buffer.from('12345678').toString('hex') +
        '0100000000000000' + '0100000000000000' + '6b00000000000000' + '0100000000000000' + '7600000000000000',
    );
  });

  it('rejects negative integers', () => {
    expect(() => new Serializer().u64(-1)).toThrow(RangeError);
  });
});

describe('ServeReader', () => {
  it('round-trips integers, strings, lists and maps whatever the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.nat({ max: Number.MAX_SAFE_INTEGER })),
        fc.array(fc.string({ unit: 'binary' })),
        fc.dictionary(fc.string(), fc.string()),
        fc.array(fc.nat()),
        async (numbers, strings, map, cuts) => {
          const wire = new Serializer().strings(strings).stringMap(Object.entries(map));
          for (const n of numbers) wire.u64(n);
          const r = reader(wire.flush(), cuts);
          expect(await r.strings('strings')).toEqual(strings);
          expect(Object.fromEntries(await r.stringMap('map'))).toEqual(map);
          for (const n of numbers) expect(await r.u64('number')).toBe(n);
          expect(await r.atEnd()).toBe(true);
        },
      ),
    );
  });

  it('leaves the bytes after a value for the next read', async () => {
    const r = reader(new Serializer().string('first').u64(7).flush(), [3, 9, 17]);
    expect(await r.string('a')).toBe('first');
    expect(r.bufferedBytes).toBeLessThanOrEqual(8);
    expect(await r.u64('b')).toBe(7);
  });

  it('ends a short read in ServeStreamEndedError naming what was read', async () => {
    const r = reader(Buffer.from([1, 2, 3]));
    await expect(r.u64('the server version')).rejects.toThrow(ServeStreamEndedError);
    await expect(reader(Buffer.alloc(0)).u64('the server version')).rejects.toThrow(/the server version/);
  });

  it('rejects non-zero padding', async () => {
    const bytes = new Serializer().string('abc').flush();
    bytes[12] = 1;
    await expect(reader(bytes).string('a name')).rejects.toThrow(/padding of a name is not zero/);
  });

  it('rejects absurd lengths before allocating', async () => {
    const bytes = new Serializer().u64(MAX_STRING_LENGTH + 1).flush();
    await expect(reader(bytes).string('a path')).rejects.toThrow(/more than the/);
    await expect(reader(new Serializer().u64(2 ** 40).flush()).strings('a list')).rejects.toThrow(ServeProtocolError);
  });

  it('rejects integers beyond 2^53 and booleans other than 0/1', async () => {
    await expect(reader(Buffer.alloc(8, 0xff)).u64('a size')).rejects.toThrow(/larger than any sane value/);
    await expect(reader(new Serializer().u64(2).flush()).bool('a flag')).rejects.toThrow(/0 or 1/);
  });

  it('turns a source error into ServeStreamEndedError', async () => {
    const failing = new Readable({
      read() {
        this.destroy(new Error('socket reset'));
      },
    });
    await expect(new ServeReader(failing, 'x').u64('v')).rejects.toThrow(ServeStreamEndedError);
  });

  it('passes a large payload through in bounded pieces', async () => {
    const payload = Buffer.alloc(1 << 20, 7);
    const chunks: Buffer[] = [];
    for (let i = 0; i < payload.length; i += 65536) chunks.push(payload.subarray(i, i + 65536));
    const r = new ServeReader(Readable.from([new Serializer().u64(payload.length).flush(), ...chunks]), 'x');
    const length = await r.u64('len');
    let seen = 0;
    for await (const piece of r.passthrough(length, 'payload')) seen += piece.length;
    expect(seen).toBe(payload.length);
    expect(r.maxBuffered).toBeLessThanOrEqual(65536 + 8);
  });

  it('ends random, truncated and mutated input in a ServeProtocolError, never another exception', async () => {
    const valid = new Serializer().u64(3).strings(['/nix/store/x', 'y']).stringMap([['a', 'b']]).flush();
    const inputs = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      fc.nat({ max: valid.length - 1 }).map((n) => valid.subarray(0, n)),
      fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
        const copy = Buffer.from(valid);
        copy[i] = (copy[i] as number) ^ x;
        return copy;
      }),
    );
    await fc.assert(
      fc.asyncProperty(inputs, fc.array(fc.nat()), async (bytes, cuts) => {
        const r = reader(bytes, cuts);
        try {
          await r.u64('n');
          await r.strings('list', 1000, 1000);
          await r.stringMap('map', 1000, 1000);
        } catch (error) {
          expect(error).toBeInstanceOf(ServeProtocolError);
        }
      }),
    );
  });
});
