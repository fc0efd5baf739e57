import { paddingFor } from './serializer.js';
import { ServeProtocolError } from './errors.js';

/** Strings other than file contents are names, paths, hashes, messages: 64 MiB is far beyond any of them. */
export const MAX_STRING_LENGTH = 64 * 1024 * 1024;
/** Every list item costs at least 8 bytes on the wire; a count above this is garbage or an attack. */
export const MAX_LIST_LENGTH = 1 << 24;

/** Values up to 2^53 - 1: the high word of a u64 may hold at most 21 bits. */
const MAX_SAFE_HIGH_WORD = 0x1fffff;

/**
 * A layout reached past the buffered bytes. It never leaves ServeReader,
 * which waits for `needed` bytes and decodes the value again from its
 * start; it happens about once per chunk a reply straddles.
 */
export class ShortRead extends Error {
  constructor(
    /** Bytes from the value's start that the read needed. */
    readonly needed: number,
    /** The field being read, for the message when the stream ends instead. */
    readonly what: string,
  ) {
    super(`${what} needs ${needed} buffered bytes`);
  }
}

/**
 * A synchronous view of bytes a ServeReader has buffered: every layout
 * (messages.ts) reads through one, so a reply that has fully arrived is
 * decoded in one pass with no await per field. A read past the end throws
 * ShortRead; every other check (lengths, counts, padding, u64 range)
 * throws the ServeProtocolError naming the peer and the byte position.
 */
export class ReplyCursor {
  private buffer: Buffer = Buffer.alloc(0);
  private start = 0;
  /** The stream position of `buffer[0]`. */
  private base = 0;
  /** Where the next read starts, in `buffer`. */
  offset = 0;

  constructor(readonly description: string) {}

  /** Starts a value at `buffer[start]`, which is byte `position` of the stream. */
  reset(buffer: Buffer, start: number, position: number): void {
    this.buffer = buffer;
    this.start = start;
    this.offset = start;
    this.base = position - start;
  }

  /** Bytes read since `reset`. */
  get consumed(): number {
    return this.offset - this.start;
  }

  u64(what: string): number {
    const at = this.advance(8, what);
    const b = this.buffer;
    // By hand rather than readUInt32LE: this runs per field, mostly in code not yet optimised.
    const high = b[at + 4]! + b[at + 5]! * 0x100 + b[at + 6]! * 0x1_0000 + b[at + 7]! * 0x100_0000;
    if (high > MAX_SAFE_HIGH_WORD) throw this.malformed(`${what} is ${b.readBigUInt64LE(at)}, larger than any sane value`);
    return high * 0x1_0000_0000 + b[at]! + b[at + 1]! * 0x100 + b[at + 2]! * 0x1_0000 + b[at + 3]! * 0x100_0000;
  }

  bool(what: string): boolean {
    const value = this.u64(what);
    if (value > 1) throw this.malformed(`${what} should be 0 or 1 but is ${value}`);
    return value === 1;
  }

  /** Exactly `length` bytes, a slice of the buffer (no copy). */
  bytes(length: number, what: string): Buffer {
    const at = this.advance(length, what);
    return this.buffer.subarray(at, at + length);
  }

  stringBytes(what: string, maxLength = MAX_STRING_LENGTH): Buffer {
    const length = this.u64(`the length of ${what}`);
    if (length > maxLength) throw this.malformed(`${what} claims ${length} bytes, more than the ${maxLength} allowed`);
    const value = this.bytes(length, what);
    this.padding(length, what);
    return value;
  }

  string(what: string, maxLength = MAX_STRING_LENGTH): string {
    const length = this.u64(`the length of ${what}`);
    if (length > maxLength) throw this.malformed(`${what} claims ${length} bytes, more than the ${maxLength} allowed`);
    const at = this.advance(length, what);
    this.padding(length, what);
    return this.buffer.toString('utf8', at, at + length);
  }

  count(what: string, maxCount = MAX_LIST_LENGTH): number {
    const count = this.u64(`the length of ${what}`);
    if (count > maxCount) throw this.malformed(`${what} claims ${count} items, more than the ${maxCount} allowed`);
    return count;
  }

  strings(what: string, maxCount = MAX_LIST_LENGTH, maxLength = MAX_STRING_LENGTH): string[] {
    const count = this.count(what, maxCount);
    const values: string[] = [];
    if (count === 0) return values;
    const item = `an item of ${what}`;
    for (let i = 0; i < count; i++) values.push(this.string(item, maxLength));
    return values;
  }

  stringMap(what: string, maxCount = MAX_LIST_LENGTH, maxLength = MAX_STRING_LENGTH): Map<string, string> {
    const count = this.count(what, maxCount);
    const map = new Map<string, string>();
    for (let i = 0; i < count; i++) {
      const key = this.string(`a key of ${what}`, maxLength);
      map.set(key, this.string(`a value of ${what}`, maxLength));
    }
    return map;
  }

  /** The zero bytes that pad a string of `length` bytes to a multiple of 8. */
  padding(length: number, what: string): void {
    const size = paddingFor(length);
    if (size === 0) return;
    const at = this.advance(size, `the padding of ${what}`);
    for (let i = at; i < at + size; i++) {
      if (this.buffer[i] !== 0) throw this.malformed(`the padding of ${what} is not zero`);
    }
  }

  malformed(problem: string): ServeProtocolError {
    return new ServeProtocolError(`Bad data from ${this.description} at byte ${this.base + this.offset}: ${problem}.`);
  }

  /** Claims `length` bytes and returns where they start; ShortRead when they have not all arrived. */
  private advance(length: number, what: string): number {
    const at = this.offset;
    if (this.buffer.length - at < length) throw new ShortRead(at + length - this.start, what);
    this.offset = at + length;
    return at;
  }
}
