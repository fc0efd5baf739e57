const NAR_MAGIC = 'nix-archive-1';
/** Linux PATH_MAX: no symlink target or token in a NAR can be longer. */
const MAX_TOKEN_LENGTH = 4096;
/** Linux NAME_MAX. */
const MAX_NAME_LENGTH = 255;
/** A path of PATH_MAX bytes nests at most 2048 directories ("a/a/..."), each two frames here. */
const MAX_STACK_DEPTH = 4 * 2048;

/** A NAR that breaks the grammar; ServeReader turns it into a ServeProtocolError with the byte position. */
export class NarFormatError extends Error {}

type NodeType = 'unknown' | 'regular' | 'directory' | 'symlink';
interface NodeFrame {
  kind: 'node';
  type: NodeType;
  /** Name of the previous directory entry: Nix requires strictly sorted names. */
  previousName?: Buffer;
}
interface EntryFrame {
  kind: 'entry';
  parent: NodeFrame;
  name?: Buffer;
}
type Frame = NodeFrame | EntryFrame;

/** What the next token means. */
type Expect = 'magic' | 'open' | 'field' | 'type' | 'executable' | 'target' | 'name';
/** Where the bytes being read belong. */
type Phase = 'length' | 'token' | 'contents' | 'padding';

/**
 * Follows one NAR (Nix's `libutil/archive` format) through its bytes and
 * checks the grammar the way Nix's `parseDump` does, without copying or
 * re-encoding anything: `feed` looks at a chunk, says how many of its bytes
 * belong to the NAR, and the caller hands those on unchanged. File contents
 * are skipped by length, so a chunk of a large file costs O(1); only tokens
 * (at most 4 KiB) are gathered across chunk borders. Directory nesting uses
 * an explicit stack, so hostile depth cannot exhaust the JS stack.
 */
export class NarScanner {
  /** Bytes of the NAR seen so far. */
  size = 0;
  private phase: Phase = 'length';
  private expect: Expect = 'magic';
  /** After `(`: push this frame. */
  private opening: Frame | undefined;
  private readonly stack: Frame[] = [];
  private finished = false;
  /** The 8 length bytes, or the token, as gathered so far. */
  private pending = Buffer.alloc(8);
  private pendingFill = 0;
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
    return this.phase === 'contents' ? this.remaining + this.padAfter : 0;
  }

  /**
   * Consumes bytes of `chunk` from `start` and returns how many belong to
   * the NAR: all of them, unless the NAR ends inside the chunk.
   */
  feed(chunk: Buffer, start = 0): number {
    let at = start;
    while (at < chunk.length && !this.finished) {
      if (this.phase === 'contents') {
        const n = Math.min(this.remaining, chunk.length - at);
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.startPadding();
        continue;
      }
      if (this.phase === 'padding') {
        const n = Math.min(this.remaining, chunk.length - at);
        for (let i = at; i < at + n; i++) if (chunk[i] !== 0) throw new NarFormatError('the padding of a NAR string is not zero');
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.endPadding();
        continue;
      }
      const n = Math.min(this.wanted - this.pendingFill, chunk.length - at);
      chunk.copy(this.pending, this.pendingFill, at, at + n);
      this.pendingFill += n;
      at += n;
      if (this.pendingFill === this.wanted) {
        if (this.phase === 'length') this.lengthRead();
        else this.tokenRead(this.pending.subarray(0, this.wanted));
      }
    }
    this.size += at - start;
    return at - start;
  }

  private lengthRead(): void {
    const length = this.pending.readBigUInt64LE(0);
    this.pendingFill = 0;
    if (this.expect === 'field' && this.contentsNext) {
      this.contentsNext = false;
      if (length > BigInt(Number.MAX_SAFE_INTEGER)) throw new NarFormatError('a NAR file claims an absurd length');
      this.remaining = Number(length);
      this.padAfter = (8 - (this.remaining % 8)) % 8;
      this.phase = 'contents';
      if (this.remaining === 0) this.startPadding();
      return;
    }
    const max = this.expect === 'name' ? MAX_NAME_LENGTH : MAX_TOKEN_LENGTH;
    if (length > BigInt(max)) throw new NarFormatError(`a NAR token claims ${length} bytes, more than the ${max} allowed`);
    this.wanted = Number(length);
    this.padAfter = (8 - (this.wanted % 8)) % 8;
    if (this.pending.length < this.wanted) this.pending = Buffer.alloc(MAX_TOKEN_LENGTH);
    this.phase = 'token';
    if (this.wanted === 0) this.tokenRead(this.pending.subarray(0, 0));
  }

  private tokenRead(token: Buffer): void {
    this.handle(token);
    this.pendingFill = 0;
    this.wanted = 8;
    this.startPadding();
  }

  private startPadding(): void {
    this.remaining = this.padAfter;
    this.padAfter = 0;
    this.phase = 'padding';
    if (this.remaining === 0) this.endPadding();
  }

  private endPadding(): void {
    this.phase = 'length';
    // The root's `)` and its padding are the NAR's last bytes.
    if (this.closed) this.finished = true;
  }

  private handle(token: Buffer): void {
    const text = token.toString('latin1');
    switch (this.expect) {
      case 'magic':
        if (text !== NAR_MAGIC) throw new NarFormatError('the data is not a NAR (no nix-archive-1 header)');
        this.expect = 'open';
        this.opening = { kind: 'node', type: 'unknown' };
        return;
      case 'open': {
        if (text !== '(') throw new NarFormatError('a NAR node or entry does not start with "("');
        this.stack.push(this.opening!);
        this.opening = undefined;
        if (this.stack.length > MAX_STACK_DEPTH) throw new NarFormatError('the NAR nests directories deeper than any file system allows');
        this.expect = 'field';
        return;
      }
      case 'type': {
        if (text !== 'regular' && text !== 'directory' && text !== 'symlink') {
          throw new NarFormatError(`unknown NAR node type ${JSON.stringify(text.slice(0, 40))}`);
        }
        (this.top() as NodeFrame).type = text;
        this.expect = 'field';
        return;
      }
      case 'executable':
        if (token.length !== 0) throw new NarFormatError('the NAR executable marker is not empty');
        this.expect = 'field';
        return;
      case 'target':
        this.expect = 'field';
        return;
      case 'name': {
        const entry = this.top() as EntryFrame;
        checkEntryName(token, entry.parent.previousName);
        const name = Buffer.from(token);
        entry.name = name;
        entry.parent.previousName = name;
        this.expect = 'field';
        return;
      }
      case 'field':
        this.field(text);
        return;
    }
  }

  private field(field: string): void {
    if (field === ')') {
      this.stack.pop();
      if (this.stack.length === 0) this.closed = true;
      return;
    }
    const top = this.top();
    if (top.kind === 'entry') {
      if (field === 'name') this.expect = 'name';
      else if (field === 'node') {
        if (top.name === undefined) throw new NarFormatError('a NAR directory entry has a node but no name');
        this.expect = 'open';
        this.opening = { kind: 'node', type: 'unknown' };
      } else throw new NarFormatError(`unexpected NAR field ${JSON.stringify(field.slice(0, 40))} in a directory entry`);
      return;
    }
    if (field === 'type') {
      if (top.type !== 'unknown') throw new NarFormatError('a NAR node has two type fields');
      this.expect = 'type';
    } else if (field === 'contents' && top.type === 'regular') {
      this.contentsNext = true;
    } else if (field === 'executable' && top.type === 'regular') {
      this.expect = 'executable';
    } else if (field === 'target' && top.type === 'symlink') {
      this.expect = 'target';
    } else if (field === 'entry' && top.type === 'directory') {
      this.expect = 'open';
      this.opening = { kind: 'entry', parent: top };
    } else {
      throw new NarFormatError(`unexpected NAR field ${JSON.stringify(field.slice(0, 40))} in a ${top.type} node`);
    }
  }

  private top(): Frame {
    return this.stack[this.stack.length - 1] as Frame;
  }
}

function checkEntryName(name: Buffer, previous: Buffer | undefined): void {
  const text = name.toString('latin1');
  if (name.length === 0 || text === '.' || text === '..' || name.includes(0x2f) || name.includes(0)) {
    throw new NarFormatError(`the NAR has an invalid file name ${JSON.stringify(text.slice(0, 40))}`);
  }
  if (previous !== undefined && Buffer.compare(name, previous) <= 0) {
    throw new NarFormatError('the NAR directory entries are not sorted');
  }
}
