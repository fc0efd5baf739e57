import { MAX_LIST_LENGTH, MAX_STRING_LENGTH, ReplyCursor, ShortRead } from './cursor.js';
import { ServeProtocolError, ServeStreamEndedError } from './errors.js';

export { MAX_LIST_LENGTH, MAX_STRING_LENGTH } from './cursor.js';

const EMPTY = Buffer.alloc(0);

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
  /** The one cursor every layout reads through (decoding is synchronous, so never two at once). */
  private readonly cursor: ReplyCursor;
  /** Largest number of bytes ever held at once: the flat-memory guarantee, measurable. */
  maxBuffered = 0;
  /** Bytes consumed so far. */
  position = 0;

  /** `description` names the peer in messages, e.g. `nix-store --serve on ruby`. */
  constructor(
    source: ByteSource,
    readonly description: string,
  ) {
    this.cursor = new ReplyCursor(description);
    this.iterator = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * Decodes one value laid out by `layout` from the buffered bytes in one
   * synchronous pass; only when they have not all arrived does it wait for
   * the bytes the layout was short of and decode the value again from its
   * start. A reply that arrived in one chunk costs one await, not one per
   * field.
   */
  async decode<T>(layout: (cursor: ReplyCursor) => T): Promise<T> {
    for (;;) {
      const value = this.decodeBuffered(layout, 0);
      if (!(value instanceof ShortRead)) return value;
      await this.fill(value);
    }
  }

  /**
   * Items laid out by `item` until it returns undefined (the list's end),
   * each decoded like `decode`: all buffered items in one synchronous pass,
   * and a wait only for an item that straddles the bytes still to come, so
   * a long list that arrives in many chunks is never decoded twice.
   */
  async decodeItems<T>(item: (cursor: ReplyCursor, index: number) => T | undefined): Promise<T[]> {
    const items: T[] = [];
    for (;;) {
      const value = this.decodeBuffered(item, items.length);
      if (value instanceof ShortRead) await this.fill(value);
      else if (value === undefined) return items;
      else items.push(value);
    }
  }

  async u64(what: string): Promise<number> {
    return this.decode((cursor) => cursor.u64(what));
  }

  async bool(what: string): Promise<boolean> {
    return this.decode((cursor) => cursor.bool(what));
  }

  /** Exactly `length` bytes, buffered: only for bounded sizes (use passthrough for file contents). */
  async bytes(length: number, what: string): Promise<Buffer> {
    return this.decode((cursor) => cursor.bytes(length, what));
  }

  async stringBytes(what: string, maxLength = MAX_STRING_LENGTH): Promise<Buffer> {
    return this.decode((cursor) => cursor.stringBytes(what, maxLength));
  }

  async string(what: string, maxLength = MAX_STRING_LENGTH): Promise<string> {
    return this.decode((cursor) => cursor.string(what, maxLength));
  }

  async count(what: string, maxCount = MAX_LIST_LENGTH): Promise<number> {
    return this.decode((cursor) => cursor.count(what, maxCount));
  }

  async strings(what: string, maxCount = MAX_LIST_LENGTH, maxLength = MAX_STRING_LENGTH): Promise<string[]> {
    const count = await this.count(what, maxCount);
    const item = `an item of ${what}`;
    return this.decodeItems((cursor, index) => (index < count ? cursor.string(item, maxLength) : undefined));
  }

  async stringMap(what: string, maxCount = MAX_LIST_LENGTH, maxLength = MAX_STRING_LENGTH): Promise<Map<string, string>> {
    return this.decode((cursor) => cursor.stringMap(what, maxCount, maxLength));
  }

  /** The zero bytes that pad a string of `length` bytes to a multiple of 8. */
  async padding(length: number, what: string): Promise<void> {
    return this.decode((cursor) => cursor.padding(length, what));
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

  /** `layout` over the buffered head chunk, consumed when it succeeds; the ShortRead when bytes are missing. */
  private decodeBuffered<T>(layout: (cursor: ReplyCursor, index: number) => T, index: number): T | ShortRead {
    this.cursor.reset(this.chunks[0] ?? EMPTY, this.headOffset, this.position);
    let value: T;
    try {
      value = layout(this.cursor, index);
    } catch (error) {
      if (error instanceof ShortRead) return error;
      throw error;
    }
    this.consumed(this.cursor.consumed);
    return value;
  }

  /** Waits until the bytes a layout was short of are buffered, then makes them one chunk for the next pass. */
  private async fill(short: ShortRead): Promise<void> {
    await this.need(short.needed, short.what);
    if (this.headAvailable() >= short.needed) return;
    const parts: Buffer[] = [];
    let joined = 0;
    while (joined < short.needed) {
      const chunk = this.chunks.shift() as Buffer;
      parts.push(joined === 0 ? chunk.subarray(this.headOffset) : chunk);
      joined += parts[parts.length - 1]!.length;
      this.headOffset = 0;
    }
    this.chunks.unshift(Buffer.concat(parts, joined));
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

  /** Removes `length` bytes of the head chunk, as a slice of it; the caller made sure they are there. */
  private take(length: number): Buffer {
    const head = this.chunks[0] as Buffer;
    const out = head.subarray(this.headOffset, this.headOffset + length);
    this.consumed(length);
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
