import { paddingFor } from './serializer.js';
import { ServeProtocolError, ServeStreamEndedError } from './errors.js';

/** Strings other than file contents are names, paths, hashes, messages: 64 MiB is far beyond any of them. */
export const MAX_STRING_LENGTH = 64 * 1024 * 1024;
/** Every list item costs at least 8 bytes on the wire; a count above this is garbage or an attack. */
export const MAX_LIST_LENGTH = 1 << 24;

type Chunk = Buffer | Uint8Array | string;
/**
 * Bytes from a stream, a generator, or an array of chunks; an item may be a
 * batch of chunks (streamChunks), and a source's `next(atLeast)` may wait
 * for that many bytes when the reader knows they are coming.
 */
export type ByteSource = AsyncIterable<Chunk | readonly Buffer[]> | Iterable<Chunk | readonly Buffer[]>;

/** A push parser that follows a format through raw bytes (e.g. NarScanner). */
export interface IncrementalScanner {
  /** How many bytes of `chunk` from `start` belong to the format (fewer only when it ends inside the chunk). */
  feed(chunk: Buffer, start: number): number;
  readonly done: boolean;
  /** Bytes the format is certain to have next (e.g. the rest of a file's contents): the reader may wait for them. */
  readonly bytesAhead?: number;
}

/** A batch of scanned bytes is waited for up to this size: one step per batch, not per source chunk. */
const SCAN_BATCH = 256 * 1024;

/**
 * A pull reader over a byte stream with an explicit buffer: `await reader.u64()`
 * takes exactly the bytes it needs and leaves the rest for the next call, so
 * one reader serves a long-lived connection, command after command. It pulls
 * a chunk only when the buffer is short, which keeps the source's
 * back-pressure intact, and every short read ends in a ServeStreamEndedError,
 * never a hang.
 */
export class ServeReader {
  private readonly iterator: AsyncIterator<Chunk | readonly Buffer[], unknown, number | undefined> | Iterator<Chunk | readonly Buffer[], unknown, number | undefined>;
  private chunks: Buffer[] = [];
  private headOffset = 0;
  private buffered = 0;
  private ended = false;
  /** Largest number of bytes ever held at once: the flat-memory guarantee, measurable. */
  maxBuffered = 0;
  /** Bytes consumed so far. */
  position = 0;

  /** `description` names the peer in messages, e.g. `nix-store --serve on ruby`. */
  constructor(
    source: ByteSource,
    readonly description: string,
  ) {
    this.iterator = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  async u64(what: string): Promise<number> {
    await this.need(8, what);
    const value = this.take(8).readBigUInt64LE(0);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw this.malformed(`${what} is ${value}, larger than any sane value`);
    }
    return Number(value);
  }

  async bool(what: string): Promise<boolean> {
    const value = await this.u64(what);
    if (value > 1) throw this.malformed(`${what} should be 0 or 1 but is ${value}`);
    return value === 1;
  }

  /** Exactly `length` bytes, buffered: only for bounded sizes (use passthrough for file contents). */
  async bytes(length: number, what: string): Promise<Buffer> {
    await this.need(length, what);
    return this.take(length);
  }

  async stringBytes(what: string, maxLength = MAX_STRING_LENGTH): Promise<Buffer> {
    const length = await this.u64(`the length of ${what}`);
    if (length > maxLength) throw this.malformed(`${what} claims ${length} bytes, more than the ${maxLength} allowed`);
    const value = await this.bytes(length, what);
    await this.padding(length, what);
    return value;
  }

  async string(what: string, maxLength = MAX_STRING_LENGTH): Promise<string> {
    return (await this.stringBytes(what, maxLength)).toString('utf8');
  }

  async count(what: string, maxCount = MAX_LIST_LENGTH): Promise<number> {
    const count = await this.u64(`the length of ${what}`);
    if (count > maxCount) throw this.malformed(`${what} claims ${count} items, more than the ${maxCount} allowed`);
    return count;
  }

  async strings(what: string, maxCount = MAX_LIST_LENGTH, maxLength = MAX_STRING_LENGTH): Promise<string[]> {
    const count = await this.count(what, maxCount);
    const values: string[] = [];
    for (let i = 0; i < count; i++) values.push(await this.string(`an item of ${what}`, maxLength));
    return values;
  }

  async stringMap(what: string, maxCount = MAX_LIST_LENGTH, maxLength = MAX_STRING_LENGTH): Promise<Map<string, string>> {
    const count = await this.count(what, maxCount);
    const map = new Map<string, string>();
    for (let i = 0; i < count; i++) {
      const key = await this.string(`a key of ${what}`, maxLength);
      map.set(key, await this.string(`a value of ${what}`, maxLength));
    }
    return map;
  }

  /** The zero bytes that pad a string of `length` bytes to a multiple of 8. */
  async padding(length: number, what: string): Promise<void> {
    const size = paddingFor(length);
    if (size === 0) return;
    const pad = await this.bytes(size, `the padding of ${what}`);
    if (pad.some((byte) => byte !== 0)) throw this.malformed(`the padding of ${what} is not zero`);
  }

  /**
   * Hands `length` bytes to the consumer chunk by chunk as they arrive,
   * holding at most one source chunk: for file contents of any size.
   */
  async *passthrough(length: number, what: string): AsyncGenerator<Buffer> {
    let remaining = length;
    while (remaining > 0) {
      if (this.buffered === 0 && !(await this.pull())) {
        throw this.truncated(`${what} (${remaining} of ${length} bytes missing)`);
      }
      const chunk = this.take(Math.min(remaining, this.headAvailable()));
      remaining -= chunk.length;
      yield chunk;
    }
  }

  /**
   * Hands the bytes `scanner` claims to the consumer, as slices of the
   * source's own chunks (no copy), until it says it is done: for a NAR of
   * any size, one step per source chunk. A scanner's format error becomes a
   * ServeProtocolError naming the peer and the byte position.
   */
  async *scan(scanner: IncrementalScanner, what: string): AsyncGenerator<Buffer> {
    while (!scanner.done) {
      if (this.buffered === 0 && !(await this.pull(what))) throw this.truncated(what);
      yield this.claim(scanner);
    }
  }

  /**
   * The same as `scan`, a batch at a time: every buffered slice the
   * scanner claims, after waiting for up to SCAN_BATCH bytes the scanner
   * knows are coming. Copy paths take one promise, one check and one write
   * per batch instead of per 32 KiB SSH packet.
   */
  async *scanBatches(scanner: IncrementalScanner, what: string): AsyncGenerator<Buffer[]> {
    while (!scanner.done) {
      if (this.buffered === 0 && !(await this.pull(what, Math.min(scanner.bytesAhead ?? 1, SCAN_BATCH)))) throw this.truncated(what);
      const batch: Buffer[] = [];
      while (this.buffered > 0 && !scanner.done) batch.push(this.claim(scanner));
      yield batch;
    }
  }

  /**
   * What `scanner` claims of the buffered head chunk, as a slice of it (no
   * copy), consumed; a scanner's format error becomes a ServeProtocolError
   * naming the peer and the byte position.
   */
  private claim(scanner: IncrementalScanner): Buffer {
    const head = this.chunks[0] as Buffer;
    let taken: number;
    try {
      taken = scanner.feed(head, this.headOffset);
    } catch (error) {
      if (error instanceof Error && !(error instanceof ServeProtocolError)) throw this.malformed(error.message);
      throw error;
    }
    const slice = head.subarray(this.headOffset, this.headOffset + taken);
    this.consumed(taken);
    return slice;
  }

  /** True when the source is exhausted and nothing is buffered. */
  async atEnd(): Promise<boolean> {
    while (this.buffered === 0) {
      if (!(await this.pull())) return true;
    }
    return false;
  }

  /** Stops reading the source (for a Readable: destroys it). */
  async close(): Promise<void> {
    this.ended = true;
    this.chunks = [];
    this.buffered = 0;
    await this.iterator.return?.();
  }

  malformed(problem: string): ServeProtocolError {
    return new ServeProtocolError(`Bad data from ${this.description} at byte ${this.position}: ${problem}.`);
  }

  private truncated(what: string, cause?: unknown): ServeStreamEndedError {
    return new ServeStreamEndedError(`The stream from ${this.description} ended while reading ${what}.`, { cause });
  }

  private async need(length: number, what: string): Promise<void> {
    while (this.buffered < length) {
      if (!(await this.pull(what))) throw this.truncated(what);
    }
  }

  private headAvailable(): number {
    const head = this.chunks[0];
    return head === undefined ? 0 : head.length - this.headOffset;
  }

  /** Adds one chunk or batch from the source (asked to gather `atLeast` bytes first); false at its end. */
  private async pull(what = 'more data', atLeast?: number): Promise<boolean> {
    if (this.ended) return false;
    let next: IteratorResult<Chunk | readonly Buffer[], unknown>;
    try {
      next = await this.iterator.next(atLeast);
    } catch (error) {
      this.ended = true;
      throw this.truncated(what, error);
    }
    if (next.done) {
      this.ended = true;
      return false;
    }
    const value = next.value;
    if (Array.isArray(value)) for (const chunk of value as readonly Buffer[]) this.add(toBuffer(chunk));
    else this.add(toBuffer(value as Chunk));
    return true;
  }

  private add(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.maxBuffered = Math.max(this.maxBuffered, this.buffered);
  }

  /** Removes `length` buffered bytes; the caller made sure they are there. */
  private take(length: number): Buffer {
    const head = this.chunks[0];
    if (head !== undefined && head.length - this.headOffset >= length) {
      const out = head.subarray(this.headOffset, this.headOffset + length);
      this.consumed(length);
      return out;
    }
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const chunk = this.chunks[0] as Buffer;
      const n = Math.min(length - filled, chunk.length - this.headOffset);
      chunk.copy(out, filled, this.headOffset, this.headOffset + n);
      filled += n;
      this.consumed(n);
    }
    return out;
  }

  private consumed(length: number): void {
    this.headOffset += length;
    this.buffered -= length;
    this.position += length;
    const head = this.chunks[0];
    if (head !== undefined && this.headOffset === head.length) {
      this.chunks.shift();
      this.headOffset = 0;
    }
  }
}

function toBuffer(chunk: Chunk): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  throw new ServeProtocolError('A serve-protocol source yielded something other than bytes.');
}
