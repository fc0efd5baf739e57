/** Linux PATH_MAX: no symlink target or token in a NAR can be longer. */
const MAX_TOKEN_LENGTH = 4096;
/** Linux NAME_MAX. */
const MAX_NAME_LENGTH = 255;
/** A path of PATH_MAX bytes nests at most 2048 directories ("a/a/..."), each two frames here. */
const MAX_STACK_DEPTH = 4 * 2048;
/** 2^53 / 2^32: a length whose high word reaches this is beyond Number.MAX_SAFE_INTEGER. */
const HIGH_WORD_LIMIT = 0x200000;

/** A NAR that breaks the grammar; ServeReader turns it into a ServeProtocolError with the byte position. */
export class NarFormatError extends Error {}

// Frames on the stack: a node (by its type so far) or a directory entry (before or after its name).
const NODE_UNKNOWN = 0;
const NODE_REGULAR = 1;
const NODE_DIRECTORY = 2;
const NODE_SYMLINK = 3;
const ENTRY = 4;
const ENTRY_NAMED = 5;
const NODE_TYPE_NAMES = ['unknown', 'regular', 'directory', 'symlink'];

// What the next token means.
const EXPECT_MAGIC = 0;
const EXPECT_OPEN = 1;
const EXPECT_FIELD = 2;
const EXPECT_TYPE = 3;
const EXPECT_EXECUTABLE = 4;
const EXPECT_TARGET = 5;
const EXPECT_NAME = 6;

// Where the bytes being read belong.
const PHASE_LENGTH = 0;
const PHASE_TOKEN = 1;
const PHASE_CONTENTS = 2;
const PHASE_PADDING = 3;

// The grammar's words, matched as bytes: a token never becomes a string unless it is quoted in an error.
const word = (text: string): Buffer => Buffer.from(text, 'latin1');
const MAGIC = word('nix-archive-1');
const TYPE = word('type');
const NAME = word('name');
const NODE = word('node');
const ENTRY_WORD = word('entry');
const TARGET = word('target');
const REGULAR = word('regular');
const SYMLINK = word('symlink');
const CONTENTS = word('contents');
const DIRECTORY = word('directory');
const EXECUTABLE = word('executable');
const OPEN_PAREN = 0x28;
const CLOSE_PAREN = 0x29;
const SLASH = 0x2f;
const DOT = 0x2e;

/**
 * Follows one NAR (Nix's `libutil/archive` format) through its bytes and
 * checks the grammar the way Nix's `parseDump` does, without copying or
 * re-encoding anything: `feed` looks at a chunk, says how many of its bytes
 * belong to the NAR, and the caller hands those on unchanged. File contents
 * are skipped by length, so a chunk of a large file costs O(1); a token
 * (at most 4 KiB) is read where it lies in the chunk, and gathered only when
 * it crosses a chunk border. Tokens are matched as bytes and frames are
 * small integers: a NAR of 20,000 small files is ~250,000 tokens, and a
 * string or object per token cost more CPU than the rest of its copy.
 * Directory nesting uses an explicit stack, so hostile depth cannot
 * exhaust the JS stack.
 */
export class NarScanner {
  /** Bytes of the NAR seen so far. */
  size = 0;
  private phase = PHASE_LENGTH;
  private expect = EXPECT_MAGIC;
  /** After `(`: push this frame. */
  private opening = NODE_UNKNOWN;
  /** Frames, innermost last (NODE_* or ENTRY*). */
  private readonly stack: number[] = [];
  /** For a directory node at stack index i: its previous entry's name (Nix requires strictly sorted names)… */
  private readonly previousNames: Buffer[] = [];
  /** …and that name's length, -1 before its first entry. */
  private readonly previousNameLengths: number[] = [];
  private finished = false;
  /** A length or token that crosses a chunk border, as gathered so far. */
  private pending = Buffer.alloc(8);
  private pendingFill = 0;
  /** Bytes of the length (8) or token being read. */
  private wanted = 8;
  /** Bytes of file contents (phase contents) or padding (phase padding) still to come. */
  private remaining = 0;
  /** Padding that follows the token or contents being read. */
  private padAfter = 0;
  /** `contents` was the last field: the next length is the file's, not a token's. */
  private contentsNext = false;
  /** The root node's `)` has been read. */
  private closed = false;

  /** True once the NAR's last byte was fed. */
  get done(): boolean {
    return this.finished;
  }

  /** Bytes certain to come next: the rest of the file contents being read, and their padding. */
  get bytesAhead(): number {
    return this.phase === PHASE_CONTENTS ? this.remaining + this.padAfter : 0;
  }

  /**
   * Consumes bytes of `chunk` from `start` and returns how many belong to
   * the NAR: all of them, unless the NAR ends inside the chunk.
   */
  feed(chunk: Buffer, start = 0): number {
    let at = start;
    const end = chunk.length;
    while (at < end && !this.finished) {
      const phase = this.phase;
      if (phase === PHASE_CONTENTS) {
        const n = Math.min(this.remaining, end - at);
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.startPadding();
      } else if (phase === PHASE_PADDING) {
        const n = Math.min(this.remaining, end - at);
        for (let i = at; i < at + n; i++) if (chunk[i] !== 0) throw new NarFormatError('the padding of a NAR string is not zero');
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.endPadding();
      } else if (this.pendingFill === 0 && end - at >= this.wanted) {
        // The whole length or token lies in this chunk: read it in place.
        if (phase === PHASE_TOKEN) {
          at += this.wanted;
          this.tokenRead(chunk, at - this.wanted);
          continue;
        }
        this.lengthRead(chunk.readUInt32LE(at), chunk.readUInt32LE(at + 4));
        at += 8;
        // Most tokens follow their length in the same chunk, padding and all: one step for the three.
        if (this.phase === PHASE_TOKEN && end - at >= this.wanted + this.padAfter) at = this.wholeToken(chunk, at);
      } else {
        const n = Math.min(this.wanted - this.pendingFill, end - at);
        chunk.copy(this.pending, this.pendingFill, at, at + n);
        this.pendingFill += n;
        at += n;
        if (this.pendingFill === this.wanted) {
          this.pendingFill = 0;
          if (phase === PHASE_LENGTH) this.lengthRead(this.pending.readUInt32LE(0), this.pending.readUInt32LE(4));
          else this.tokenRead(this.pending, 0);
        }
      }
    }
    this.size += at - start;
    return at - start;
  }

  /** A length field (two little-endian words) was read. */
  private lengthRead(low: number, high: number): void {
    if (this.expect === EXPECT_FIELD && this.contentsNext) {
      this.contentsNext = false;
      if (high >= HIGH_WORD_LIMIT) throw new NarFormatError('a NAR file claims an absurd length');
      this.remaining = high * 0x100000000 + low;
      this.padAfter = (8 - (this.remaining % 8)) % 8;
      this.phase = PHASE_CONTENTS;
      if (this.remaining === 0) this.startPadding();
      return;
    }
    const max = this.expect === EXPECT_NAME ? MAX_NAME_LENGTH : MAX_TOKEN_LENGTH;
    if (high !== 0 || low > max) {
      const length = (BigInt(high) << 32n) | BigInt(low);
      throw new NarFormatError(`a NAR token claims ${length} bytes, more than the ${max} allowed`);
    }
    this.wanted = low;
    this.padAfter = (8 - (low % 8)) % 8;
    if (this.pending.length < low) this.pending = Buffer.alloc(MAX_TOKEN_LENGTH);
    this.phase = PHASE_TOKEN;
    if (low === 0) this.tokenRead(this.pending, 0);
  }

  /** The token of `wanted` bytes at `buffer[at]` was read. */
  private tokenRead(buffer: Buffer, at: number): void {
    this.handle(buffer, at, this.wanted);
    this.wanted = 8;
    this.startPadding();
  }

  /** Reads the token of `wanted` bytes at `chunk[at]` and its padding, all in the chunk; returns where the next length starts. */
  private wholeToken(chunk: Buffer, at: number): number {
    const length = this.wanted;
    this.handle(chunk, at, length);
    const end = at + length + this.padAfter;
    for (let i = at + length; i < end; i++) if (chunk[i] !== 0) throw new NarFormatError('the padding of a NAR string is not zero');
    this.wanted = 8;
    this.padAfter = 0;
    this.endPadding();
    return end;
  }

  private startPadding(): void {
    this.remaining = this.padAfter;
    this.padAfter = 0;
    this.phase = PHASE_PADDING;
    if (this.remaining === 0) this.endPadding();
  }

  private endPadding(): void {
    this.phase = PHASE_LENGTH;
    // The root's `)` and its padding are the NAR's last bytes.
    if (this.closed) this.finished = true;
  }

  private handle(token: Buffer, at: number, length: number): void {
    switch (this.expect) {
      case EXPECT_MAGIC:
        if (!equals(token, at, length, MAGIC)) throw new NarFormatError('the data is not a NAR (no nix-archive-1 header)');
        this.expect = EXPECT_OPEN;
        this.opening = NODE_UNKNOWN;
        return;
      case EXPECT_OPEN: {
        if (length !== 1 || token[at] !== OPEN_PAREN) throw new NarFormatError('a NAR node or entry does not start with "("');
        this.stack.push(this.opening);
        if (this.stack.length > MAX_STACK_DEPTH) throw new NarFormatError('the NAR nests directories deeper than any file system allows');
        this.expect = EXPECT_FIELD;
        return;
      }
      case EXPECT_TYPE: {
        const type = equals(token, at, length, REGULAR) ? NODE_REGULAR : equals(token, at, length, DIRECTORY) ? NODE_DIRECTORY : equals(token, at, length, SYMLINK) ? NODE_SYMLINK : NODE_UNKNOWN;
        if (type === NODE_UNKNOWN) throw new NarFormatError(`unknown NAR node type ${quoted(token, at, length)}`);
        const top = this.stack.length - 1;
        this.stack[top] = type;
        if (type === NODE_DIRECTORY) this.previousNameLengths[top] = -1;
        this.expect = EXPECT_FIELD;
        return;
      }
      case EXPECT_EXECUTABLE:
        if (length !== 0) throw new NarFormatError('the NAR executable marker is not empty');
        this.expect = EXPECT_FIELD;
        return;
      case EXPECT_TARGET:
        this.expect = EXPECT_FIELD;
        return;
      case EXPECT_NAME: {
        const top = this.stack.length - 1;
        this.rememberName(top - 1, token, at, length);
        this.stack[top] = ENTRY_NAMED;
        this.expect = EXPECT_FIELD;
        return;
      }
      case EXPECT_FIELD:
        this.field(token, at, length);
        return;
    }
  }

  private field(token: Buffer, at: number, length: number): void {
    if (length === 1 && token[at] === CLOSE_PAREN) {
      this.stack.pop();
      if (this.stack.length === 0) this.closed = true;
      return;
    }
    const top = this.stack[this.stack.length - 1]!;
    if (top === ENTRY || top === ENTRY_NAMED) {
      if (equals(token, at, length, NAME)) this.expect = EXPECT_NAME;
      else if (equals(token, at, length, NODE)) {
        if (top !== ENTRY_NAMED) throw new NarFormatError('a NAR directory entry has a node but no name');
        this.expect = EXPECT_OPEN;
        this.opening = NODE_UNKNOWN;
      } else throw new NarFormatError(`unexpected NAR field ${quoted(token, at, length)} in a directory entry`);
      return;
    }
    if (equals(token, at, length, TYPE)) {
      if (top !== NODE_UNKNOWN) throw new NarFormatError('a NAR node has two type fields');
      this.expect = EXPECT_TYPE;
    } else if (top === NODE_REGULAR && equals(token, at, length, CONTENTS)) {
      this.contentsNext = true;
    } else if (top === NODE_REGULAR && equals(token, at, length, EXECUTABLE)) {
      this.expect = EXPECT_EXECUTABLE;
    } else if (top === NODE_SYMLINK && equals(token, at, length, TARGET)) {
      this.expect = EXPECT_TARGET;
    } else if (top === NODE_DIRECTORY && equals(token, at, length, ENTRY_WORD)) {
      this.expect = EXPECT_OPEN;
      this.opening = ENTRY;
    } else {
      throw new NarFormatError(`unexpected NAR field ${quoted(token, at, length)} in a ${NODE_TYPE_NAMES[top]} node`);
    }
  }

  /**
   * Checks an entry name of the directory at stack index `directory` (a
   * valid file name, after its previous entry's) and keeps it, in that
   * directory's own buffer, for the next entry's comparison.
   */
  private rememberName(directory: number, token: Buffer, at: number, length: number): void {
    if (!validName(token, at, length)) throw new NarFormatError(`the NAR has an invalid file name ${quoted(token, at, length)}`);
    const previousLength = this.previousNameLengths[directory]!;
    let previous = this.previousNames[directory];
    if (previousLength >= 0 && compare(token, at, length, previous!, previousLength) <= 0) {
      throw new NarFormatError('the NAR directory entries are not sorted');
    }
    if (previous === undefined) this.previousNames[directory] = previous = Buffer.allocUnsafe(MAX_NAME_LENGTH);
    // By hand: Buffer#copy's argument checks cost more than copying a name.
    for (let i = 0; i < length; i++) previous[i] = token[at + i]!;
    this.previousNameLengths[directory] = length;
  }
}

/** Whether `buffer[at, at + length)` holds exactly the bytes of `expected`. */
function equals(buffer: Buffer, at: number, length: number, expected: Buffer): boolean {
  if (length !== expected.length) return false;
  for (let i = 0; i < length; i++) if (buffer[at + i] !== expected[i]) return false;
  return true;
}

/** A name Nix accepts for a directory entry: not empty, `.` or `..`, and without `/` or NUL. */
function validName(buffer: Buffer, at: number, length: number): boolean {
  if (length === 0) return false;
  if (buffer[at] === DOT && (length === 1 || (length === 2 && buffer[at + 1] === DOT))) return false;
  for (let i = at; i < at + length; i++) {
    const byte = buffer[i];
    if (byte === SLASH || byte === 0) return false;
  }
  return true;
}

/** Byte-wise order of `buffer[at, at + length)` against `other[0, otherLength)`, as Buffer.compare orders them. */
function compare(buffer: Buffer, at: number, length: number, other: Buffer, otherLength: number): number {
  const common = Math.min(length, otherLength);
  for (let i = 0; i < common; i++) {
    const difference = buffer[at + i]! - other[i]!;
    if (difference !== 0) return difference;
  }
  return length - otherLength;
}

/** A token as an error quotes it: its first 40 characters (latin1), JSON-quoted. */
function quoted(buffer: Buffer, at: number, length: number): string {
  return JSON.stringify(buffer.toString('latin1', at, at + length).slice(0, 40));
}
