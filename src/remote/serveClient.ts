import { Readable } from 'node:stream';
import type { Derivation } from '../drv/derivation.js';
import { buildResultFromExitStatus, type BuildResult } from './buildResult.js';
import { exportStreamFrom, scanExportStream, type ExportedPath } from './exportStream.js';
import { checkedNar, expectedDigest, type NarHashCheck, type NarStream } from './narCheck.js';
import { LocalNarError } from './localNarError.js';
import { NarScanner } from './narScanner.js';
import { ServeProtocolError, ServeStreamEndedError } from './serveCodec/errors.js';
import {
  acceptsAddToStoreNar,
  CLIENT_VERSION,
  decodeBuildPathsReply,
  decodeBuildResult,
  decodeHello,
  decodeImportAck,
  decodePathInfos,
  decodeStorePaths,
  encodeAddToStoreNar,
  encodeExportEnd,
  encodeExportItem,
  encodeExportTrailer,
  encodeBuildDerivation,
  encodeBuildPaths,
  encodeDumpStorePath,
  encodeExportPaths,
  encodeHello,
  encodeImportPaths,
  encodeQueryClosure,
  encodeQueryPathInfos,
  encodeQueryValidPaths,
  sharedMinor,
  type BuildSettings,
  type PathInfo,
  type ReplyContext,
} from './serveCodec/messages.js';
import { ServeReader, type ByteSource } from './serveCodec/parser.js';
import { assertDrvPath, assertStorePath, DEFAULT_STORE_DIR } from '../storePath/storePath.js';
import { ServeConnectionLostError } from './serveConnectionLostError.js';
import { ServerLog } from './serverLog.js';
import { stripColours } from './terminalEscapes.js';
import { streamChunks } from './streamChunks.js';
import type { ServeTransport } from './transport.js';
import { UntrustedReplyError } from './untrustedReplyError.js';
import { WriteBatch } from './writeBatch.js';

export { CLIENT_VERSION, SERVE_MAGIC_1, SERVE_MAGIC_2, ServeCommand, type PathInfo } from './serveCodec/messages.js';
export { ServeConnectionLostError } from './serveConnectionLostError.js';
export type { NarHashCheck, NarStream } from './narCheck.js';

/**
 * Bytes written ahead into the server's input before waiting for it to drain.
 * A child's stdin pipe reports "full" past 16 KiB, so waiting on every such
 * write would stop the stream once per chunk; past this limit we do wait, so
 * the memory held per transfer stays bounded.
 */
const WRITE_AHEAD = 1024 * 1024;
/**
 * NAR bytes gathered before they are written while the receiver is still
 * busy with earlier ones: a writev of this size costs one system call and
 * one wake-up of the receiving nix-store where 32 KiB SSH packets cost one
 * each.
 */
const WRITE_BATCH = 256 * 1024;
/**
 * A source batch this large (SSH packets of one NAR, not a small path) goes
 * out at once, with what gathered before it, to a receiver that has taken
 * everything: held back, it would leave the receiver idle. Small paths still
 * gather, since an SSH channel sends a packet per write.
 */
const IDLE_WRITE = 16 * 1024;

export interface BuildDerivationOptions extends BuildSettings {
  /** Log lines of this build only (the client's own listeners get them too). */
  onLog?: (line: string) => void;
}

export interface ServeClientOptions {
  /** Store the server's paths live in (default /nix/store). */
  storeDir?: string;
  /** Every stderr line of the server: build logs and Nix's messages. */
  onLog?: (line: string) => void;
  /** Give up when the server has not greeted within this time (default 30 s). */
  handshakeTimeoutMs?: number;
  /**
   * Build from the `.drv` files in the server's store (build-paths) instead
   * of sending the derivation (build-derivation): a nix-daemon refuses
   * build-derivation of input-addressed derivations to users outside its
   * trusted-users, and offload's local store is such a daemon for them.
   */
  buildFromStoreDerivations?: boolean;
}

/** How long a dying server's stderr is awaited for its last words. */
const LAST_WORDS_MS = 2_000;

/** Marks an error that came from an import's source stream, not from our server. */
/**
 * The source's own failure when reading it threw (the reader wraps it as
 * "ended while reading …" with the failure as its cause): a builder or local
 * `nix-store --serve` that was exporting lost its connection, say. That error
 * names the real cause and is classified as what it is (a lost connection is
 * retried), where the wrapper would fail the job. A source that simply ended
 * early stays a truncated stream.
 */
function sourceError(error: unknown): unknown {
  return error instanceof ServeStreamEndedError && error.cause instanceof Error ? error.cause : error;
}

/** Chunks of a NAR written in a batch, and how their source takes them back. */
interface Recycled {
  chunks: readonly Buffer[];
  recycle: (chunk: Buffer) => void;
}

/** What to do once a batch is written: its recycled chunks go back to their sources. */
function written(recycled: Recycled[]): (() => void) | undefined {
  if (recycled.length === 0) return undefined;
  return () => {
    for (const { chunks, recycle } of recycled) for (const chunk of chunks) recycle(chunk);
  };
}

class SourceFailure extends Error {
  constructor(readonly error: unknown) {
    super('the source of an upload failed', { cause: error });
  }
}

/** The next item of a source; its failure is marked as the source's. */
async function fromSource<T>(source: AsyncIterator<T>): Promise<IteratorResult<T>> {
  try {
    return await source.next();
  } catch (error) {
    throw new SourceFailure(error);
  }
}

/**
 * Client for `nix-store --serve --write` (the protocol of Nix's `ssh://`
 * store and of Hydra). One command at a time: calls queue on an internal
 * promise chain. Any failure inside a command leaves the byte stream at an
 * unknown position, so the client then closes the transport and every
 * later call fails fast with ServeConnectionLostError.
 */
export class ServeClient {
  readonly host: string;
  private version = CLIENT_VERSION;
  private readonly storeDir: string;
  private readonly buildFromStoreDerivations: boolean;
  private readonly reader: ServeReader;
  private readonly serverLog: ServerLog;
  /** Settles when the last queued command is done: the next one starts after it. */
  private queueEnd: Promise<void> = Promise.resolve();
  /**
   * Commands asked for and not yet answered (queued or running), streams
   * (dumpNars, exportPaths) from their first read to their end included:
   * close() detaches only from a server with none.
   */
  private pending = 0;
  private broken: Error | undefined;
  /** Told to stop in the middle of a command or stream: it may have work to undo (an import to roll back). */
  private stoppedBusy = false;
  private writeError: Error | undefined;
  private built = false;

  private constructor(
    private readonly transport: ServeTransport,
    options: ServeClientOptions,
  ) {
    this.host = transport.host;
    this.reader = new ServeReader(streamChunks(transport.stdout), `nix-store --serve on ${transport.host}`);
    this.storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
    this.buildFromStoreDerivations = options.buildFromStoreDerivations ?? false;
    this.serverLog = new ServerLog(transport.stderr);
    if (options.onLog) this.serverLog.listen(options.onLog);
    this.watchTransport();
  }

  /** Full version the server announced, e.g. 0x207. */
  get serverVersion(): number {
    return this.version;
  }

  /** Minor version both sides understand: it fixes the layout of every message. */
  get minor(): number {
    return sharedMinor(this.version);
  }

  /** Greets the server: our magic and version, then its magic and version. */
  static async open(transport: ServeTransport, options: ServeClientOptions = {}): Promise<ServeClient> {
    const client = new ServeClient(transport, options);
    const timeoutMs = options.handshakeTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        transport.close();
        reject(new ServeConnectionLostError(
          `nix-store --serve on ${transport.host} did not answer the serve-protocol greeting within ${timeoutMs / 1000} s.`,
          transport.host,
        ));
      }, timeoutMs);
    });
    try {
      client.version = await Promise.race([client.greet(), timedOut]);
      return client;
    } catch (error) {
      throw await client.fail('greeting the server', error);
    } finally {
      clearTimeout(timer);
    }
  }

  /** False once the connection is lost or closed; such a client only fails. */
  get usable(): boolean {
    return this.broken === undefined;
  }

  /**
   * Whether a validity query with `substitute` still substitutes. Nix's
   * `nix-store --serve` turns substitution off for the rest of its life
   * when it reads the options of a build (`settings.useSubstitutes =
   * false` in opServe's getBuildSettings), so a channel that built
   * something answers such a query without fetching anything.
   */
  get substitutes(): boolean {
    return !this.built;
  }

  /** Subscribes to the server's stderr lines; returns the unsubscribe function. */
  onLog(listener: (line: string) => void): () => void {
    return this.serverLog.listen(listener);
  }

  /** The subset of `paths` that is valid on the server. `lock` adds temporary GC roots for the server's lifetime. */
  async queryValidPaths(paths: Iterable<string>, options: { lock?: boolean; substitute?: boolean } = {}): Promise<string[]> {
    const list = this.checkPaths(paths, 'A path to query');
    return this.run('querying valid paths', async () => {
      await this.write(encodeQueryValidPaths(list, options));
      const valid = await decodeStorePaths(this.reader, 'the valid paths', this.storeDir);
      this.assertAsked(valid, list, 'its list of valid paths names');
      return valid;
    });
  }

  /** Infos of the valid ones among `paths`; invalid paths are left out. */
  async queryPathInfos(paths: Iterable<string>): Promise<PathInfo[]> {
    const list = this.checkPaths(paths, 'A path to query');
    return this.run('querying path infos', async () => {
      await this.write(encodeQueryPathInfos(list));
      const infos = await decodePathInfos(this.reader, this.replyContext());
      this.assertAsked(
        infos.map((info) => info.path),
        list,
        'it sent a path info for',
      );
      return infos;
    });
  }

  /** The closure of `paths` on the server; with `includeOutputs`, plus the valid outputs of derivations in it. */
  async queryClosure(paths: Iterable<string>, includeOutputs = false): Promise<string[]> {
    const list = this.checkPaths(paths, 'A path to query');
    return this.run('querying a closure', async () => {
      await this.write(encodeQueryClosure(list, includeOutputs));
      return decodeStorePaths(this.reader, 'the closure', this.storeDir);
    });
  }

  /**
   * Streams an export stream (`nix-store --export` format) into the
   * server's store with back-pressure and waits for its acknowledgement.
   * The source is scanned on the way, so a truncated or malformed source
   * fails here instead of leaving the server waiting for more bytes.
   */
  async importPaths(
    source: ByteSource,
    options: { onPath?: (info: ExportedPath) => void } = {},
  ): Promise<ExportedPath[]> {
    return this.run('importing paths', async () => {
      const imported: ExportedPath[] = [];
      await this.write(encodeImportPaths());
      const chunks = exportStreamFrom(source, `the export stream sent to ${this.host}`, {
        storeDir: this.storeDir,
        onPath: (info) => {
          imported.push(info);
          options.onPath?.(info);
        },
      });
      for (;;) {
        let next: IteratorResult<Buffer>;
        try {
          next = await chunks.next();
        } catch (error) {
          throw new SourceFailure(sourceError(error));
        }
        if (next.done) break;
        await this.write(next.value);
      }
      await decodeImportAck(this.reader);
      return imported;
    });
  }

  /**
   * The server's export stream of `paths` (dependencies first), ending
   * exactly at the stream's final 0. The command starts when the stream is
   * first read; other commands wait until it has been read to the end.
   * Destroying the stream early loses the connection's framing: the client
   * is closed.
   */
  exportPaths(paths: Iterable<string>, options: { onPath?: (info: ExportedPath) => void } = {}): Readable {
    const list = this.checkPaths(paths, 'A path to export');
    const self = this;
    let started = false;
    let finished = false;
    const abandoned = () =>
      self.markBroken(new ServeConnectionLostError(`The export from ${self.host} was abandoned midway.`, self.host));
    async function* generate(): AsyncGenerator<Buffer> {
      self.pending++;
      const release = await self.acquire();
      started = true;
      try {
        self.assertUsable('exporting paths');
        await self.write(encodeExportPaths(list));
        yield* scanExportStream(self.reader, { storeDir: self.storeDir, ...(options.onPath ? { onPath: options.onPath } : {}) });
        finished = true;
      } catch (error) {
        throw await self.fail('exporting paths', error);
      } finally {
        if (!finished) abandoned();
        self.pending--;
        release();
      }
    }
    const stream = Readable.from(generate(), { objectMode: false });
    // A consumer that destroys the stream while we wait for the server would otherwise hold the connection until
    // more bytes arrive; closing the transport ends that wait at once.
    stream.once('close', () => {
      if (started && !finished) abandoned();
    });
    return stream;
  }

  /**
   * The NARs of `infos`, in that order: one dump-store-path request per
   * path, all sent at once, so the server streams them back to back. Each
   * NAR is checked against its info on the way (checkedNar): its size
   * always, its hash as `hash` says (NarHashCheck; with `receiver`, each
   * NAR names this host as the one to blame for a hash the receiver refuses).
   * Read each NAR's chunks to the end before taking the next NAR; stopping
   * early loses the connection's framing, so the client is then closed.
   */
  dumpNars(infos: readonly PathInfo[], options: { hash: NarHashCheck }): AsyncGenerator<NarStream> {
    const self = this;
    for (const info of infos) {
      assertStorePath(info.path, 'A path to dump', this.storeDir);
      // The receiver parses the hash it is sent; one that is not SHA-256 is refused here, before any byte moves.
      if (options.hash === 'receiver') expectedDigest(info, this.host);
    }
    const check = { hash: options.hash === 'here' };
    const blame = options.hash === 'receiver' ? { unhashedFrom: this.host } : {};
    async function* generate(): AsyncGenerator<NarStream> {
      self.pending++;
      const release = await self.acquire();
      let finished = false;
      try {
        self.assertUsable('sending paths');
        if (infos.length > 0) await self.write(Buffer.concat(infos.map((info) => encodeDumpStorePath(info.path))));
        for (const info of infos) {
          let drained = false;
          const raw = self.reader.scanBatches(new NarScanner(), `the NAR of ${info.path}`);
          async function* chunks(): AsyncGenerator<readonly Buffer[]> {
            try {
              yield* checkedNar(raw, info, self.host, check);
              drained = true;
            } catch (error) {
              throw await self.fail(`sending ${info.path}`, error);
            }
          }
          yield { info, chunks: chunks(), ...blame };
          if (!drained) throw new Error(`The NAR of ${info.path} was not read to its end before the next one.`);
        }
        finished = true;
      } finally {
        if (!finished) self.markBroken(new ServeConnectionLostError(`Sending paths from ${self.host} stopped midway.`, self.host));
        self.pending--;
        release();
      }
    }
    return generate();
  }

  /**
   * Adds each NAR to the server's store with add-to-store-NAR: the info,
   * then the NAR's bytes as they arrive, streamed with back-pressure. The
   * server checks each NAR's hash and size against the info before it
   * registers the path (Nix's LocalStore::addToStore), and its refusal of a
   * NAR that came unhashed from an untrusted host becomes that host's
   * UntrustedReplyError. Acknowledgements are read while later NARs are
   * sent, so many small paths cost no round trip each. A server too old for
   * add-to-store-NAR gets the same paths as an import-paths export stream;
   * import-paths checks no hash, so unhashed NARs are hashed here for it.
   */
  async addNars(nars: AsyncIterable<NarStream>, options: { onBytes?: (bytes: number) => void } = {}): Promise<number> {
    const unhashed = new Map<string, NarStream>();
    return this.run('adding paths', async () => {
      try {
        return await this.sendNars(nars, unhashed, options.onBytes);
      } catch (error) {
        throw (await this.refusedLie(error, unhashed)) ?? error;
      }
    });
  }

  /**
   * The requests and NAR bytes of every path leave in batches (WriteBatch)
   * that span paths: a small path's request and NAR share one write with
   * its neighbours'. Only what a source has checked is gathered (checkedNar
   * holds back a NAR's last bytes until its checks pass), so a batch never
   * carries the end of a NAR that failed one.
   */
  private async sendNars(nars: AsyncIterable<NarStream>, unhashed: Map<string, NarStream>, onBytes: ((bytes: number) => void) | undefined): Promise<number> {
    const legacy = !acceptsAddToStoreNar(this.version);
    const out = new WriteBatch();
    if (legacy) out.push(encodeImportPaths());
    let added = 0;
    let acks: Promise<void> = Promise.resolve();
    /** Chunks in `out` whose sources take them back once written (NarStream.recycle). */
    const recycling: Recycled[] = [];
    const source = nars[Symbol.asyncIterator]();
    try {
      for (let next = await fromSource(source); !next.done; next = await fromSource(source)) {
        const nar = next.value;
        const { info, unhashedFrom } = nar;
        let chunks = nar.chunks;
        if (unhashedFrom !== undefined) {
          if (legacy) chunks = checkedNar(chunks, info, unhashedFrom, { hash: true });
          else unhashed.set(info.path, nar);
        } else if (nar.fromLocalFiles && !legacy) unhashed.set(info.path, nar);
        out.push(legacy ? encodeExportItem() : encodeAddToStoreNar(info));
        const batches = chunks[Symbol.asyncIterator]();
        for (let batch = await fromSource(batches); !batch.done; batch = await fromSource(batches)) {
          const before = out.bytes;
          for (const chunk of batch.value) out.push(chunk);
          if (nar.recycle) recycling.push({ chunks: batch.value, recycle: nar.recycle });
          const size = out.bytes - before;
          onBytes?.(size);
          if (out.bytes >= WRITE_BATCH || (size >= IDLE_WRITE && this.receiverIdle())) await this.write(out.take(), written(recycling.splice(0)));
        }
        if (legacy) out.push(encodeExportTrailer(info));
        else acks = acks.then(() => decodeImportAck(this.reader));
        added++;
      }
      if (legacy) out.push(encodeExportEnd());
      await this.write(out.take(), written(recycling.splice(0)));
    } catch (error) {
      // The failure to report is the one that stopped the stream, not an acknowledgement that never came.
      acks.catch(() => undefined);
      await source.return?.();
      throw error;
    }
    if (legacy) await decodeImportAck(this.reader);
    await acks;
    return added;
  }

  /**
   * The server died refusing a NAR's hash or size (`hash mismatch importing
   * path '…'`, LocalStore::addToStore), and the store registered nothing.
   * For a NAR that came unhashed from an untrusted host, that host lied; for
   * one this process wrote from the local store's files, those files are
   * not what the local store recorded.
   */
  private async refusedLie(error: unknown, unhashed: ReadonlyMap<string, NarStream>): Promise<UntrustedReplyError | LocalNarError | undefined> {
    if (unhashed.size === 0 || error instanceof SourceFailure || error instanceof UntrustedReplyError) return undefined;
    await this.serverLog.ended(LAST_WORDS_MS);
    const refusal = /^(hash|size) mismatch importing path '([^']*)'/.exec(this.serverLog.lastError() ?? '');
    const nar = refusal ? unhashed.get(refusal[2]!) : undefined;
    if (!refusal || nar === undefined) return undefined;
    const { info } = nar;
    if (nar.unhashedFrom === undefined) {
      return new LocalNarError(info.path, `${this.host} refused the NAR written from its files, whose ${refusal[1]} differs from the recorded one (${refusal[1] === 'hash' ? info.narHash : `${info.narSize} bytes`})`);
    }
    const problem = refusal[1] === 'hash' ? `its NAR does not have the hash ${info.narHash} its path info gives` : `its NAR does not have the ${info.narSize} bytes its path info gives`;
    return new UntrustedReplyError(nar.unhashedFrom, info.path, problem);
  }

  /**
   * Builds `drv` on the server (the build-derivation command: the server
   * needs the inputs but no `.drv` file). Log lines arrive through the
   * listeners while the build runs.
   */
  async buildDerivation(drvPath: string, drv: Derivation, options: BuildDerivationOptions = {}): Promise<BuildResult> {
    assertDrvPath(drvPath, 'The derivation to build', this.storeDir);
    if (this.buildFromStoreDerivations) return this.buildPaths(drvPath, Object.keys(drv.outputs), options);
    const message = encodeBuildDerivation(drvPath, drv, options, this.minor, this.storeDir);
    this.built = true;
    return this.run(`building ${drvPath}`, async () => {
      const unsubscribe = options.onLog ? this.onLog(options.onLog) : undefined;
      try {
        await this.write(message);
        return await decodeBuildResult(this.reader, this.minor);
      } finally {
        unsubscribe?.();
      }
    });
  }

  /**
   * Builds `outputs` of `drvPath` from the `.drv` in the server's own store
   * (build-paths), as nix-build would there. The reply carries only Nix's
   * exit status and message; they become a BuildResult.
   */
  async buildPaths(drvPath: string, outputs: readonly string[], options: BuildDerivationOptions = {}): Promise<BuildResult> {
    const message = encodeBuildPaths(drvPath, outputs, options, this.minor, this.storeDir);
    return this.run(`building ${drvPath}`, async () => {
      const unsubscribe = options.onLog ? this.onLog(options.onLog) : undefined;
      try {
        await this.write(message);
        const reply = await decodeBuildPathsReply(this.reader);
        return buildResultFromExitStatus(reply.status, reply.message);
      } finally {
        unsubscribe?.();
      }
    });
  }

  /**
   * Ends the server: stdin closes, the transport stops it. Pending calls fail
   * with ServeConnectionLostError. A server with no command or stream in
   * progress has nothing left to finish, so offload's exit does not wait for
   * it to go; one stopped mid-stream or mid-command, now or when that
   * command failed, is waited for: it may still be writing a dump or
   * rolling back an import.
   */
  close(): void {
    const idle = this.pending === 0 && !this.stoppedBusy;
    this.markBroken(new ServeConnectionLostError(`The connection to ${this.host} was closed by offload.`, this.host));
    if (idle) this.transport.detach?.();
  }

  /** The server's last stderr lines, for error messages. */
  recentStderr(): string[] {
    return this.serverLog.recentLines();
  }

  // --- requests -----------------------------------------------------------

  /** Our greeting, then the server's: its version decides every later layout. */
  private async greet(): Promise<number> {
    await this.write(encodeHello());
    return decodeHello(this.reader, this.host);
  }

  private replyContext(): ReplyContext {
    return { minor: this.minor, storeDir: this.storeDir };
  }

  /** A reply may only name paths that were asked about. */
  private assertAsked(replied: readonly string[], asked: readonly string[], what: string): void {
    const askedSet = new Set(asked);
    const seen = new Set<string>();
    for (const path of replied) {
      if (!askedSet.has(path) || seen.has(path)) throw new UntrustedReplyError(this.host, path, `${what} a path it was not asked about`);
      seen.add(path);
    }
  }

  private checkPaths(paths: Iterable<string>, what: string): string[] {
    const list = [...paths];
    for (const path of list) assertStorePath(path, what, this.storeDir);
    return list;
  }

  // --- connection state ---------------------------------------------------

  /** One command at a time: resolves with the function that lets the next one start. */
  private acquire(): Promise<() => void> {
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    const previous = this.queueEnd;
    this.queueEnd = previous.then(() => done);
    return previous.then(() => release);
  }

  private async run<T>(what: string, body: () => Promise<T>): Promise<T> {
    this.pending++;
    const release = await this.acquire();
    try {
      this.assertUsable(what);
      return await body();
    } catch (error) {
      throw await this.fail(what, error);
    } finally {
      this.pending--;
      release();
    }
  }

  private assertUsable(what: string): void {
    if (this.broken) {
      throw new ServeConnectionLostError(
        `Cannot start ${what} on ${this.host}: the connection is no longer usable (${this.broken.message})`,
        this.host,
        { cause: this.broken },
      );
    }
  }

  /** A command failed midway: the framing is lost, so the connection goes, and the error says why. */
  private async fail(what: string, error: unknown): Promise<Error> {
    if (error instanceof SourceFailure) {
      const cause = error.error instanceof Error ? error.error : new Error(String(error.error));
      this.markBroken(cause);
      return cause;
    }
    const lost = error instanceof ServeStreamEndedError || this.writeError !== undefined || this.broken !== undefined;
    // A server that gave up printed why just before its stdout closed; the message should carry it.
    if (lost && !(error instanceof ServeConnectionLostError)) await this.serverLog.ended(LAST_WORDS_MS);
    const failure = this.connectionError(what, error);
    this.markBroken(failure);
    return failure;
  }

  private connectionError(what: string, error: unknown): Error {
    // A refusal already named (a builder's lie, the local store's changed files) stays what it is, even once the transport is gone.
    if (error instanceof ServeConnectionLostError || error instanceof UntrustedReplyError || error instanceof LocalNarError) return error;
    if (error instanceof ServeStreamEndedError || this.writeError !== undefined || this.broken !== undefined) {
      const recent = this.serverLog.recentLines();
      const stderr = recent.length > 0 ? ` Its last messages: ${recent.slice(-5).map(stripColours).join(' | ')}` : '';
      const serverError = this.serverLog.lastError();
      return new ServeConnectionLostError(
        `Lost the connection to nix-store --serve on ${this.host} while ${what}.${stderr}`,
        this.host,
        { cause: error, ...(serverError !== undefined && { serverError }) },
      );
    }
    if (error instanceof Error) return error;
    return new ServeProtocolError(`Unexpected failure while ${what} on ${this.host}: ${String(error)}.`);
  }

  private markBroken(reason: Error): void {
    if (this.broken) return;
    this.broken = reason;
    if (this.pending > 0) this.stoppedBusy = true;
    this.transport.close();
  }

  /** Follows the stream ends from the start, so a dead server is noticed even between commands. */
  private watchTransport(): void {
    this.transport.stdin.on('error', (error: Error) => {
      this.writeError ??= error;
    });
    const lost = () => this.noteLost();
    this.transport.stdout.once('close', lost);
    this.transport.stdin.once('close', lost);
  }

  private noteLost(): void {
    this.broken ??= new ServeConnectionLostError(`The connection to ${this.host} has ended.`, this.host);
  }

  /**
   * The receiver has taken every byte written so far, so bytes held back
   * now would leave it idle: a NAR of many small files (restored one
   * `open` at a time, the slowest step of that copy) then starts restoring
   * with its first SSH packets, not after WRITE_BATCH of them.
   */
  private receiverIdle(): boolean {
    // Not an SSH channel, which always looks idle: writing there at once turned every batch into writes
    // of a single source read (upload 1 GiB: 1.17x -> 1.37x Nix's wall, 2 rounds each).
    return this.transport.packetPerWrite !== true && this.transport.stdin.writableLength === 0;
  }

  /**
   * Writes with back-pressure: waits for `drain` when the pipe is full.
   * A batch of chunks (WRITE_BATCH of NAR bytes) leaves in one `writev`:
   * one system call per 32 KiB SSH packet into the local nix-store's
   * socket cost about 1.2 s CPU per GiB, the most of any step of a copy back.
   */
  private write(bytes: Buffer | readonly Buffer[], onWritten?: () => void): Promise<void> {
    const stdin = this.transport.stdin;
    if (this.writeError) return Promise.reject(this.writeError);
    if (stdin.destroyed || stdin.writableEnded) {
      return Promise.reject(new ServeStreamEndedError(`The input of nix-store --serve on ${this.host} is closed.`));
    }
    // Called once the stream has taken the last chunk, so every chunk before it too (callbacks come in order).
    const done =
      onWritten &&
      ((error?: Error | null) => {
        if (!error) onWritten();
      });
    let below = true;
    if (Buffer.isBuffer(bytes)) below = stdin.write(bytes, done);
    else if (bytes.length > 0) {
      stdin.cork();
      for (let i = 0; i < bytes.length; i++) below = stdin.write(bytes[i]!, i === bytes.length - 1 ? done : undefined);
      stdin.uncork();
    } else done?.();
    if (below || stdin.writableLength < WRITE_AHEAD) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        stdin.off('drain', onDrain);
        stdin.off('close', onClose);
        stdin.off('error', onError);
      };
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onClose = () => {
        cleanup();
        reject(new ServeStreamEndedError(`The input of nix-store --serve on ${this.host} closed.`));
      };
      const onError = (error: Error) => {
        cleanup();
        reject(error);
      };
      stdin.on('drain', onDrain);
      stdin.on('close', onClose);
      stdin.on('error', onError);
    });
  }
}
