import { NarScanner } from './narScanner.js';
import { ServeReader, type ByteSource } from './serveCodec/parser.js';
import { Serializer } from './serveCodec/serializer.js';
import { DEFAULT_STORE_DIR, storePathProblem } from '../storePath/storePath.js';

/** `NIXE`: the marker between a path's NAR and its metadata (export-import.cc). */
export const EXPORT_MAGIC = 0x4558494e;
const MAX_PATH_LENGTH = 4096;
const MAX_REFERENCES = 1 << 20;
const MAX_SIGNATURE_LENGTH = 64 * 1024;
/** Small tokens are gathered into chunks of about this size before they are handed on. */
const BATCH_SIZE = 64 * 1024;

/** What the export stream says about one store path. */
export interface ExportedPath {
  path: string;
  references: string[];
  /** The `.drv` that produced the path, if the exporting store knew it. */
  deriver?: string;
  /** Bytes of the path's NAR. */
  narSize: number;
}

export interface ExportScanOptions {
  /** Store paths inside must live here (default /nix/store). */
  storeDir?: string;
  /** Called once per path, after its metadata has been read. */
  onPath?: (info: ExportedPath) => void;
}

/**
 * Streams one `nix-store --export` stream through unchanged while following
 * its framing: per path a 1, the NAR, `NIXE`, the path, its references, its
 * deriver, a legacy signature flag (1 is followed by a signature string),
 * and a 0 after the last path. The serve protocol's export reply has no
 * length prefix, so this framing is the only way to know where it ends.
 * Memory stays flat: file contents pass through in the source's chunks.
 */
export async function* scanExportStream(reader: ServeReader, options: ExportScanOptions = {}): AsyncGenerator<Buffer> {
  yield* batch(scanPaths(reader, options));
}

/**
 * An export stream read from a whole source (a file, another store's
 * reply): the same scan, plus a check that nothing follows the final 0.
 */
export async function* exportStreamFrom(
  source: ByteSource,
  description: string,
  options: ExportScanOptions = {},
): AsyncGenerator<Buffer> {
  const reader = new ServeReader(source, description);
  try {
    yield* scanExportStream(reader, options);
    if (!(await reader.atEnd())) throw reader.malformed('bytes follow the end of the export stream');
  } finally {
    await reader.close();
  }
}

async function* scanPaths(reader: ServeReader, options: ExportScanOptions): AsyncGenerator<Buffer> {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  for (;;) {
    const next = await reader.u64('the export stream path marker');
    yield u64(next);
    if (next === 0) return;
    if (next !== 1) throw reader.malformed(`the export stream path marker is ${next}, not 0 or 1`);

    const scanner = new NarScanner();
    yield* reader.scan(scanner, 'a NAR in the export stream');
    const narSize = scanner.size;

    const magic = await reader.u64('the export marker');
    if (magic !== EXPORT_MAGIC) throw reader.malformed('the NAR is not followed by the NIXE export marker');
    yield u64(magic);

    const path = await storePath(reader, 'the exported path', storeDir);
    const references = await reader.strings('the references of the exported path', MAX_REFERENCES, MAX_PATH_LENGTH);
    for (const reference of references) checkStorePath(reader, reference, 'a reference of the exported path', storeDir);
    const deriver = await reader.string('the deriver of the exported path', MAX_PATH_LENGTH);
    if (deriver !== '') checkStorePath(reader, deriver, 'the deriver of the exported path', storeDir);
    const signature = await signatureFields(reader);
    yield new Serializer(256 + references.length * 128).string(path).strings(references).string(deriver).flush();
    yield signature;

    options.onPath?.({ path, references, ...(deriver === '' ? {} : { deriver }), narSize });
  }
}

/** The legacy signature: 0, or 1 and a signature Nix reads and ignores. */
async function signatureFields(reader: ServeReader): Promise<Buffer> {
  const flag = await reader.u64('the signature flag');
  if (flag === 0) return u64(0);
  if (flag !== 1) throw reader.malformed(`the signature flag is ${flag}, not 0 or 1`);
  const signature = await reader.stringBytes('the legacy signature', MAX_SIGNATURE_LENGTH);
  return new Serializer(signature.length + 24).u64(1).string(signature).flush();
}

async function storePath(reader: ServeReader, what: string, storeDir: string): Promise<string> {
  const path = await reader.string(what, MAX_PATH_LENGTH);
  checkStorePath(reader, path, what, storeDir);
  return path;
}

function checkStorePath(reader: ServeReader, path: string, what: string, storeDir: string): void {
  const problem = storePathProblem(path, storeDir);
  if (problem !== undefined) {
    throw reader.malformed(`${what} ${JSON.stringify(path.slice(0, 300))} is not a store path (${problem})`);
  }
}

function u64(value: number): Buffer {
  return new Serializer(8).u64(value).flush();
}

/**
 * Gathers the many small token buffers into larger chunks; a large chunk
 * (file contents) flushes what is pending and passes through as is.
 */
async function* batch(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingSize = 0;
  for await (const chunk of chunks) {
    if (chunk.length >= BATCH_SIZE) {
      if (pendingSize > 0) yield Buffer.concat(pending, pendingSize);
      pending = [];
      pendingSize = 0;
      yield chunk;
      continue;
    }
    pending.push(chunk);
    pendingSize += chunk.length;
    if (pendingSize >= BATCH_SIZE) {
      yield Buffer.concat(pending, pendingSize);
      pending = [];
      pendingSize = 0;
    }
  }
  if (pendingSize > 0) yield Buffer.concat(pending, pendingSize);
}
