import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { LocalNarError } from '../remote/localNarError.js';
import { paddingFor, Serializer } from '../remote/serveCodec/serializer.js';

/**
 * NAR bytes per buffer handed on: one write into the channel (ServeClient's
 * WRITE_BATCH), one read(2) of a large file. Measured on 1 GiB read from the
 * page cache: 256 KiB buffers cost this process ~0.55 s CPU, 1 MiB ones
 * ~0.9 s (fresh memory each time: a third more page faults), reads on
 * libuv's thread pool ~1.1 s whatever the size, against ~1.5 s for the
 * local nix-store's pipe (its read and write, then ours).
 */
export const NAR_CHUNK = 256 * 1024;

/**
 * Buffers of NAR_CHUNK bytes used again once a consumer has written them
 * (NarStream.recycle). Fresh memory for every 256 KiB cost more than
 * anything else in an upload: the kernel faults in each new page as read(2)
 * fills it, and the garbage collector and malloc churn through a GiB of
 * them (1 GiB upload: offload's CPU 4.2 s -> 2.5 s, wall 8.0 -> 6.1 s).
 * Only buffers handed back are reused, so a consumer that keeps one (a
 * test collecting a NAR) simply never gives it back.
 */
export class NarBufferPool {
  private readonly idle: Buffer[] = [];

  /** `keep`: idle buffers held at most; more are left to the garbage collector. */
  constructor(private readonly keep = 16) {}

  take(): Buffer {
    return this.idle.pop() ?? Buffer.allocUnsafeSlow(NAR_CHUNK);
  }

  /** A buffer (or the start of one) that `take` gave and that nothing reads any more. */
  give(buffer: Buffer): void {
    if (buffer.buffer.byteLength !== NAR_CHUNK || buffer.byteOffset !== 0 || this.idle.length >= this.keep) return;
    this.idle.push(buffer.length === NAR_CHUNK ? buffer : Buffer.from(buffer.buffer, 0, NAR_CHUNK));
  }
}

/** NAR tokens, each a serve-protocol string (a NAR uses the same framing). */
function tokens(...words: string[]): Buffer {
  const out = new Serializer(128);
  for (const word of words) out.string(word);
  return out.flush();
}

const MAGIC = tokens('nix-archive-1');
const REGULAR = tokens('(', 'type', 'regular', 'contents');
const EXECUTABLE = tokens('(', 'type', 'regular', 'executable', '', 'contents');
const SYMLINK = tokens('(', 'type', 'symlink', 'target');
const DIRECTORY = tokens('(', 'type', 'directory');
const ENTRY = tokens('entry', '(', 'name');
const NODE = tokens('node');
const CLOSE = tokens(')');
const ZEROS = Buffer.alloc(8);
const SLASH = Buffer.from('/');

export interface NarFromFilesOptions {
  /** Where full-size buffers come from, for the consumer to give back once written. */
  pool?: NarBufferPool;
  /** `realPath`'s lstat, when the caller already made it (run/localNars.ts, to choose between the files and the local channel). */
  rootStat?: Stats;
}

/** A directory being serialized: its entries in NAR order and the next one to write. */
interface Frame {
  path: Buffer;
  names: Buffer[];
  next: number;
}

/**
 * The NAR of the file system object at `realPath`, byte for byte what Nix
 * 2.8's dumpPath (`nix-store --dump`) writes: entries in the byte order of
 * their names, `executable` for a regular file whose owner may execute it,
 * symlink targets as they are, each string padded to 8 bytes. Nix reads the
 * files of the store paths it sends to a builder in its own process the same
 * way; offload did it through a local `nix-store --serve`, one more process
 * and pipe for every byte.
 *
 * Bytes come in buffers of up to NAR_CHUNK that belong to the consumer (a
 * file's contents are read straight into them; full-size ones come from
 * `pool` when given, for the consumer to give back once written), one at a
 * time as the consumer asks, so memory stays at a buffer or two whatever
 * the size.
 * Reads are synchronous (a buffer's worth from the page cache blocks the
 * event loop for a tenth of a millisecond or so). At most one file is open,
 * the one being read; a consumer that stops early closes it by returning
 * the generator (for-of does), as run/localNars.ts does for a NAR its own
 * consumer abandoned.
 * `narSize` is the path info's: buffers are sized from it, a tree that
 * grows past it fails at once, and the last buffer is held back until the
 * size came out exact, so a receiver never gets a whole NAR of another
 * size. A file that cannot be read or shrank while being read is a
 * LocalNarError for `storePath`, as is a size that differs.
 */
export function* narFromFiles(realPath: string, storePath: string, narSize: number, options: NarFromFilesOptions = {}): Generator<Buffer> {
  const { pool, rootStat } = options;
  // A NAR smaller than a chunk gets a buffer of its size: 300 small inputs must not take 300 chunks.
  const allocate = (size: number): Buffer => (size === NAR_CHUNK && pool ? pool.take() : Buffer.allocUnsafe(size));
  let buffer = allocate(Math.min(NAR_CHUNK, Math.max(narSize, 8)));
  let at = 0;
  let handedOn = 0;
  const fail = (problem: string, cause?: unknown): LocalNarError => new LocalNarError(storePath, problem, cause === undefined ? undefined : { cause });

  /** The buffer is full: the caller yields it and writing goes on in a fresh one. */
  const full = (): Buffer => {
    const out = buffer;
    handedOn += out.length;
    if (handedOn > narSize) throw fail(`its files make a NAR of more than the ${narSize} bytes the store recorded`);
    buffer = allocate(Math.min(NAR_CHUNK, Math.max(narSize - handedOn, 8)));
    at = 0;
    return out;
  };
  const ready: Buffer[] = [];
  const put = (bytes: Buffer): void => {
    let from = 0;
    while (from < bytes.length) {
      const n = bytes.copy(buffer, at, from);
      at += n;
      from += n;
      if (at === buffer.length) ready.push(full());
    }
  };
  const putString = (bytes: Buffer): void => {
    putLength(bytes.length);
    put(bytes);
    put(ZEROS.subarray(0, paddingFor(bytes.length)));
  };
  const putLength = (length: number): void => {
    if (buffer.length - at >= 8) {
      buffer.writeUInt32LE(length % 0x1_0000_0000, at);
      buffer.writeUInt32LE(Math.floor(length / 0x1_0000_0000), at + 4);
      at += 8;
      if (at === buffer.length) ready.push(full());
      return;
    }
    const word = Buffer.allocUnsafe(8);
    word.writeUInt32LE(length % 0x1_0000_0000, 0);
    word.writeUInt32LE(Math.floor(length / 0x1_0000_0000), 4);
    put(word);
  };
  const stat = (path: Buffer): Stats => {
    try {
      return lstatSync(path);
    } catch (error) {
      throw fail(`${show(path)} cannot be read (${(error as Error).message})`, error);
    }
  };

  /** Writes the node at `path` up to its entries (directory) or all of it (file, symlink); a directory's frame is returned. */
  const begin = function* (path: Buffer, known?: Stats): Generator<Buffer, Frame | undefined> {
    const st = known ?? stat(path);
    if (st.isFile()) {
      // S_IXUSR, as Nix's dump decides.
      put(st.mode & 0o100 ? EXECUTABLE : REGULAR);
      yield* contents(path, st.size);
      put(CLOSE);
      return undefined;
    }
    if (st.isSymbolicLink()) {
      put(SYMLINK);
      let target: Buffer;
      try {
        target = readlinkSync(path, { encoding: 'buffer' });
      } catch (error) {
        throw fail(`the symlink ${show(path)} cannot be read (${(error as Error).message})`, error);
      }
      putString(target);
      put(CLOSE);
      return undefined;
    }
    if (st.isDirectory()) {
      put(DIRECTORY);
      let names: Buffer[];
      try {
        names = readdirSync(path, { encoding: 'buffer' });
      } catch (error) {
        throw fail(`the directory ${show(path)} cannot be read (${(error as Error).message})`, error);
      }
      // Nix keeps them in a std::map<std::string>: byte order, not the locale's.
      names.sort((a, b) => Buffer.compare(a, b));
      return { path, names, next: 0 };
    }
    throw fail(`${show(path)} is neither a regular file, a directory nor a symlink`);
  };

  /**
   * A file's contents, read straight into the buffers handed on, through
   * one descriptor (opening it for each buffer cost an open and a close per
   * 256 KiB, 4,096 of each per GiB). It stays open across yields and is
   * closed by `finally`, which also runs when the consumer stops early
   * (`return()`, as for-of does on a break or a throw) or a read fails.
   */
  const contents = function* (path: Buffer, size: number): Generator<Buffer> {
    putLength(size);
    yield* ready.splice(0);
    if (size > 0) {
      let fd: number;
      try {
        fd = openSync(path, 'r');
      } catch (error) {
        throw fail(`${show(path)} cannot be read (${(error as Error).message})`, error);
      }
      try {
        // A file that grew since lstat is cut at its size here and refused by the receiver's hash check.
        let done = 0;
        while (done < size) {
          const want = Math.min(buffer.length - at, size - done);
          let got: number;
          try {
            got = readSync(fd, buffer, at, want, done);
          } catch (error) {
            throw fail(`${show(path)} cannot be read (${(error as Error).message})`, error);
          }
          if (got === 0) throw fail(`${show(path)} shrank while it was read`);
          at += got;
          done += got;
          if (at === buffer.length) yield full();
        }
      } finally {
        closeSync(fd);
      }
    }
    put(ZEROS.subarray(0, paddingFor(size)));
    yield* ready.splice(0);
  };

  put(MAGIC);
  const stack: Frame[] = [];
  const root = yield* begin(Buffer.from(realPath), rootStat);
  if (root) stack.push(root);
  while (stack.length > 0) {
    yield* ready.splice(0);
    const frame = stack[stack.length - 1]!;
    if (frame.next === frame.names.length) {
      put(CLOSE);
      stack.pop();
      // The entry in the parent that held this directory.
      if (stack.length > 0) put(CLOSE);
      continue;
    }
    const name = frame.names[frame.next++]!;
    put(ENTRY);
    putString(name);
    put(NODE);
    const child = yield* begin(Buffer.concat([frame.path, SLASH, name]));
    if (child) stack.push(child);
    else put(CLOSE);
  }
  yield* ready.splice(0);
  if (handedOn + at !== narSize) throw fail(`its files make a NAR of ${handedOn + at} bytes, not the ${narSize} the store recorded`);
  if (at > 0) yield buffer.subarray(0, at);
}

function show(path: Buffer): string {
  return JSON.stringify(path.toString());
}
