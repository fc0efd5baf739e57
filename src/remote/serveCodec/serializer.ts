import { compareDrvText, encodeDrvText } from '../../drv/drvBytes.js';

/**
 * Builds serve-protocol messages (Nix `libutil/serialise`): u64 little-endian
 * integers, strings as length + bytes + zero padding to 8, lists as a count
 * followed by their items. One growing buffer per message, flushed as a
 * single Buffer so a command reaches the socket in one write.
 */
export class Serializer {
  private buffer: Buffer;
  private offset = 0;

  // Unzeroed: every byte up to `offset` is written (padding included), and only those leave.
  constructor(initialSize = 1024) {
    this.buffer = Buffer.allocUnsafe(initialSize);
  }

  private ensure(size: number): void {
    const needed = this.offset + size;
    if (needed <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2));
    this.buffer.copy(grown, 0, 0, this.offset);
    this.buffer = grown;
  }

  u64(value: number | bigint | boolean): this {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) return this.bigU64(value);
    // Two 32-bit halves: a BigInt per word cost more than the rest of a small message's encoding.
    this.ensure(8);
    this.buffer.writeUInt32LE(value % 0x1_0000_0000, this.offset);
    this.buffer.writeUInt32LE(Math.floor(value / 0x1_0000_0000), this.offset + 4);
    this.offset += 8;
    return this;
  }

  private bigU64(value: number | bigint | boolean): this {
    const big = typeof value === 'bigint' ? value : BigInt(typeof value === 'boolean' ? Number(value) : value);
    if (big < 0n || big > 0xffff_ffff_ffff_ffffn) throw new RangeError(`u64 out of range: ${big}`);
    this.ensure(8);
    this.buffer.writeBigUInt64LE(big, this.offset);
    this.offset += 8;
    return this;
  }

  /**
   * A string or raw bytes (NAR names and contents are bytes, not text).
   * Strings go out as the bytes they were read from: UTF-8, with the bytes
   * of a derivation that were not UTF-8 restored (drv/drvBytes.ts).
   */
  string(value: string | Uint8Array): this {
    const bytes = typeof value === 'string' ? encodeDrvText(value) : value;
    const padding = paddingFor(bytes.length);
    this.u64(bytes.length);
    this.ensure(bytes.length + padding);
    this.buffer.set(bytes, this.offset);
    this.offset += bytes.length;
    this.buffer.fill(0, this.offset, this.offset + padding);
    this.offset += padding;
    return this;
  }

  strings(values: Iterable<string>): this {
    const list = [...values];
    this.u64(list.length);
    for (const value of list) this.string(value);
    return this;
  }

  /** Entries in the order given: callers that mimic a C++ std::map sort first. */
  stringMap(entries: Iterable<readonly [string, string]>): this {
    const list = [...entries];
    this.u64(list.length);
    for (const [key, value] of list) this.string(key).string(value);
    return this;
  }

  /** The message so far; the serializer starts empty again. */
  flush(): Buffer {
    const out = Buffer.from(this.buffer.subarray(0, this.offset));
    this.offset = 0;
    return out;
  }
}

export function paddingFor(length: number): number {
  return (8 - (length % 8)) % 8;
}

/** Byte order of C++ std::string comparison, which orders Nix's std::map keys. */
export const compareBytes = compareDrvText;
