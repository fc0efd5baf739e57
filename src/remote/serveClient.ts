import { Readable } from 'node:stream';
import type { Derivation } from '../drv/derivation.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { buildStatusName, type BuildResult } from './buildResult.js';
import { exportStreamFrom, scanExportStream, type ExportedPath } from './exportStream.js';
import { ServeProtocolError, ServeStreamEndedError } from './serveCodec/errors.js';
import { LineSplitter } from './serveCodec/lineSplitter.js';
import { ServeReader, type ByteSource } from './serveCodec/parser.js';
import { compareBytes, Serializer } from './serveCodec/serializer.js';
import { assertDrvPath, assertStorePath, DEFAULT_STORE_DIR, storePathProblem } from '../store/storePath.js';
import type { ServeTransport } from './transport.js';

export const SERVE_MAGIC_1 = 0x390c9deb;
export const SERVE_MAGIC_2 = 0x5452eecb;
/**
 * We speak 2.6. The server gates every optional field on the *client's*
 * minor version (opServe reads `clientVersion`), so announcing 6 fixes the
 * layout: no keep-failed build option (minor 7), build results with
 * built outputs (minor 6), path infos with hash/ca/sigs (minor 4).
 */
export const CLIENT_VERSION = 0x206;
const MAJOR_MASK = 0xff00;
const MINOR_MASK = 0x00ff;

/** Command numbers from Nix's serve-protocol.hh. */
export const ServeCommand = {
  QueryValidPaths: 1,
  QueryPathInfos: 2,
  DumpStorePath: 3,
  ImportPaths: 4,
  ExportPaths: 5,
  BuildPaths: 6,
  QueryClosure: 7,
  BuildDerivation: 8,
  AddToStoreNar: 9,
} as const;

const MAX_PATH_LENGTH = 4096;
const STDERR_TAIL_LINES = 20;
const ANSI_ESCAPE = /\u001b\[[0-9;]*[A-Za-z]/g;

/**
 * The server went away in the middle of a command (SSH channel closed,
 * `nix-store --serve` killed or crashed) or had already gone before it.
 * The command's outcome is unknown; the executor requeues the job.
 */
export class ServeConnectionLostError extends OffloadError {
  constructor(
    message: string,
    readonly host: string,
    options?: { cause?: unknown },
  ) {
    super(message, ExitCode.hostsUnusable, options);
  }
}

/** What `nix-store --serve` knows about a valid store path. */
export interface PathInfo {
  path: string;
  deriver?: string;
  references: string[];
  /** The serve protocol sends the NAR size here too (no compression). */
  downloadSize: number;
  narSize: number;
  /** `sha256:<base32>`; only from servers speaking minor ≥ 4. */
  narHash?: string;
  /** Content address, e.g. `fixed:r:sha256:...`; absent for input-addressed paths. */
  ca?: string;
  sigs: string[];
}

export interface BuildDerivationOptions {
  /** Seconds without log output before the build is killed; 0 = no limit. */
  maxSilentTime?: number;
  /** Seconds the build may run; 0 = no limit. */
  buildTimeout?: number;
  /** Bytes of log before the build is killed; 0 = no limit. */
  maxLogSize?: number;
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
}

/** Marks an error that came from an import's source stream, not from our server. */
class SourceFailure extends Error {
  constructor(readonly error: unknown) {
    super('the source of an upload failed', { cause: error });
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
  private readonly reader: ServeReader;
  private readonly logListeners = new Set<(line: string) => void>();
  private readonly stderrTail: string[] = [];
  private tail: Promise<void> = Promise.resolve();
  private broken: Error | undefined;
  private writeError: Error | undefined;

  private constructor(
    private readonly transport: ServeTransport,
    options: ServeClientOptions,
  ) {
    this.host = transport.host;
    this.reader = new ServeReader(transport.stdout, `nix-store --serve on ${transport.host}`);
    this.storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
    this.watchTransport(options.onLog);
  }

  /** Full version the server announced, e.g. 0x207. */
  get serverVersion(): number {
    return this.version;
  }

  /** Minor version both sides understand: it fixes the layout of every message. */
  get minor(): number {
    return Math.min(this.version & MINOR_MASK, CLIENT_VERSION & MINOR_MASK);
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
      client.version = await Promise.race([client.handshake(), timedOut]);
      return client;
    } catch (error) {
      const failure = client.connectionError('greeting the server', error);
      client.markBroken(failure);
      throw failure;
    } finally {
      clearTimeout(timer);
    }
  }

  /** False once the connection is lost or closed; such a client only fails. */
  get usable(): boolean {
    return this.broken === undefined;
  }

  /** Subscribes to the server's stderr lines; returns the unsubscribe function. */
  onLog(listener: (line: string) => void): () => void {
    this.logListeners.add(listener);
    return () => this.logListeners.delete(listener);
  }

  /** The subset of `paths` that is valid on the server. `lock` adds temporary GC roots for the server's lifetime. */
  async queryValidPaths(paths: Iterable<string>, options: { lock?: boolean; substitute?: boolean } = {}): Promise<string[]> {
    const list = this.checkPaths(paths, 'A path to query');
    return this.run('querying valid paths', async () => {
      await this.send(new Serializer()
        .u64(ServeCommand.QueryValidPaths)
        .u64(options.lock ?? false)
        .u64(options.substitute ?? false)
        .strings(list));
      return this.readStorePaths('the valid paths');
    });
  }

  /** Infos of the valid ones among `paths`; invalid paths are left out. */
  async queryPathInfos(paths: Iterable<string>): Promise<PathInfo[]> {
    const list = this.checkPaths(paths, 'A path to query');
    return this.run('querying path infos', async () => {
      await this.send(new Serializer().u64(ServeCommand.QueryPathInfos).strings(list));
      const infos: PathInfo[] = [];
      for (;;) {
        const path = await this.reader.string('a path info', MAX_PATH_LENGTH);
        if (path === '') return infos;
        infos.push(await this.readPathInfo(this.checkReplyPath(path)));
      }
    });
  }

  /** The closure of `paths` on the server; with `includeOutputs`, plus the valid outputs of derivations in it. */
  async queryClosure(paths: Iterable<string>, includeOutputs = false): Promise<string[]> {
    const list = this.checkPaths(paths, 'A path to query');
    return this.run('querying a closure', async () => {
      await this.send(new Serializer().u64(ServeCommand.QueryClosure).u64(includeOutputs).strings(list));
      return this.readStorePaths('the closure');
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
      await this.send(new Serializer().u64(ServeCommand.ImportPaths));
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
          throw new SourceFailure(error);
        }
        if (next.done) break;
        await this.write(next.value);
      }
      const ack = await this.reader.u64('the import acknowledgement');
      if (ack !== 1) throw this.reader.malformed(`the import acknowledgement is ${ack}, not 1`);
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
      const release = await self.acquire();
      started = true;
      try {
        self.assertUsable('exporting paths');
        await self.send(new Serializer().u64(ServeCommand.ExportPaths).u64(0).strings(list));
        yield* scanExportStream(self.reader, { storeDir: self.storeDir, ...(options.onPath ? { onPath: options.onPath } : {}) });
        finished = true;
      } catch (error) {
        throw self.fail('exporting paths', error);
      } finally {
        if (!finished) abandoned();
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
   * Builds `drv` on the server (the build-derivation command: the server
   * needs the inputs but no `.drv` file). Log lines arrive through the
   * listeners while the build runs.
   */
  async buildDerivation(drvPath: string, drv: Derivation, options: BuildDerivationOptions = {}): Promise<BuildResult> {
    assertDrvPath(drvPath, 'The derivation to build', this.storeDir);
    const message = this.basicDerivation(drvPath, drv);
    this.buildOptions(message, options);
    return this.run(`building ${drvPath}`, async () => {
      const unsubscribe = options.onLog ? this.onLog(options.onLog) : undefined;
      try {
        await this.send(message);
        return await this.readBuildResult();
      } finally {
        unsubscribe?.();
      }
    });
  }

  /** Ends the server: stdin closes, the transport stops it. Pending calls fail with ServeConnectionLostError. */
  close(): void {
    this.markBroken(new ServeConnectionLostError(`The connection to ${this.host} was closed by offload.`, this.host));
  }

  /** The server's last stderr lines, for error messages. */
  recentStderr(): string[] {
    return [...this.stderrTail];
  }

  // --- wire layouts -------------------------------------------------------

  private async handshake(): Promise<number> {
    await this.send(new Serializer().u64(SERVE_MAGIC_1).u64(CLIENT_VERSION));
    const magicBytes = await this.reader.bytes(8, 'the greeting');
    if (magicBytes.readBigUInt64LE(0) !== BigInt(SERVE_MAGIC_2)) {
      const preview = JSON.stringify(magicBytes.toString('latin1'));
      throw new ServeProtocolError(
        `${this.host} answered the serve-protocol greeting with ${preview} instead of Nix's magic number; ` +
          'is nix-store installed there, and does the login shell print to stdout?',
      );
    }
    const version = await this.reader.u64('the server version');
    if ((version & MAJOR_MASK) !== (CLIENT_VERSION & MAJOR_MASK)) {
      throw new ServeProtocolError(
        `nix-store --serve on ${this.host} speaks protocol ${version >> 8}.${version & MINOR_MASK}, ` +
          `which offload (protocol ${CLIENT_VERSION >> 8}.x) cannot talk to.`,
      );
    }
    return version;
  }

  /** `writeDerivation` in derivations.cc: a BasicDerivation, maps in std::map (byte) order. */
  private basicDerivation(drvPath: string, drv: Derivation): Serializer {
    const message = new Serializer(4096).u64(ServeCommand.BuildDerivation).string(drvPath);
    const outputs = Object.entries(drv.outputs).sort(([a], [b]) => compareBytes(a, b));
    message.u64(outputs.length);
    for (const [name, output] of outputs) {
      if (output.path !== '') assertStorePath(output.path, `Output ${name} of ${drvPath}`, this.storeDir);
      message.string(name).string(output.path).string(output.hashAlgo).string(output.hash);
    }
    for (const src of drv.inputSrcs) assertStorePath(src, `An input source of ${drvPath}`, this.storeDir);
    message.strings([...drv.inputSrcs].sort(compareBytes));
    message.string(drv.system).string(drv.builder).strings(drv.args);
    message.stringMap(Object.entries(drv.env).sort(([a], [b]) => compareBytes(a, b)));
    return message;
  }

  /** Build settings as opServe's getBuildSettings reads them for our minor version. */
  private buildOptions(message: Serializer, options: BuildDerivationOptions): void {
    message.u64(seconds(options.maxSilentTime, 'maxSilentTime')).u64(seconds(options.buildTimeout, 'buildTimeout'));
    if (this.minor >= 2) message.u64(seconds(options.maxLogSize, 'maxLogSize'));
    // Repeats must be 0 (newer servers refuse others); enforce-determinism as Nix's own client defaults it.
    if (this.minor >= 3) message.u64(0).u64(true);
  }

  private async readBuildResult(): Promise<BuildResult> {
    const status = await this.reader.u64('the build status');
    const errorMsg = (await this.reader.string('the build error message')).replace(ANSI_ESCAPE, '');
    const result: BuildResult = {
      status,
      statusName: buildStatusName(status),
      errorMsg,
      timesBuilt: 0,
      isNonDeterministic: false,
      startTime: 0,
      stopTime: 0,
      builtOutputs: new Map(),
    };
    if (this.minor >= 3) {
      result.timesBuilt = await this.reader.u64('the build count');
      result.isNonDeterministic = await this.reader.bool('the non-determinism flag');
      result.startTime = await this.reader.u64('the build start time');
      result.stopTime = await this.reader.u64('the build stop time');
    }
    if (this.minor >= 6) result.builtOutputs = await this.reader.stringMap('the built outputs');
    return result;
  }

  private async readPathInfo(path: string): Promise<PathInfo> {
    const deriver = await this.reader.string('a deriver', MAX_PATH_LENGTH);
    const references = await this.readStorePaths('the references');
    const info: PathInfo = {
      path,
      ...(deriver === '' ? {} : { deriver: this.checkReplyPath(deriver) }),
      references,
      downloadSize: await this.reader.u64('a download size'),
      narSize: await this.reader.u64('a NAR size'),
      sigs: [],
    };
    if (this.minor >= 4) {
      info.narHash = await this.reader.string('a NAR hash', 1024);
      const ca = await this.reader.string('a content address', 1024);
      if (ca !== '') info.ca = ca;
      info.sigs = await this.reader.strings('the signatures', 1024, 4096);
    }
    return info;
  }

  private async readStorePaths(what: string): Promise<string[]> {
    const paths = await this.reader.strings(what, undefined, MAX_PATH_LENGTH);
    return paths.map((path) => this.checkReplyPath(path));
  }

  private checkReplyPath(path: string): string {
    const problem = storePathProblem(path, this.storeDir);
    if (problem !== undefined) {
      throw this.reader.malformed(`the server sent ${JSON.stringify(path.slice(0, 300))}, which is not a store path (${problem})`);
    }
    return path;
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
    const previous = this.tail;
    this.tail = previous.then(() => done);
    return previous.then(() => release);
  }

  private async run<T>(what: string, body: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      this.assertUsable(what);
      return await body();
    } catch (error) {
      throw this.fail(what, error);
    } finally {
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
  private fail(what: string, error: unknown): Error {
    if (error instanceof SourceFailure) {
      const cause = error.error instanceof Error ? error.error : new Error(String(error.error));
      this.markBroken(cause);
      return cause;
    }
    const failure = this.connectionError(what, error);
    this.markBroken(failure);
    return failure;
  }

  private connectionError(what: string, error: unknown): Error {
    if (error instanceof ServeConnectionLostError) return error;
    if (error instanceof ServeStreamEndedError || this.writeError !== undefined || this.broken !== undefined) {
      const stderr = this.stderrTail.length > 0 ? ` Its last messages: ${this.stderrTail.slice(-5).join(' | ')}` : '';
      return new ServeConnectionLostError(
        `Lost the connection to nix-store --serve on ${this.host} while ${what}.${stderr}`,
        this.host,
        { cause: error },
      );
    }
    if (error instanceof Error) return error;
    return new ServeProtocolError(`Unexpected failure while ${what} on ${this.host}: ${String(error)}.`);
  }

  private markBroken(reason: Error): void {
    if (this.broken) return;
    this.broken = reason;
    this.transport.close();
  }

  /** Follows stderr (logs) and stream ends from the start, so a dead server is noticed even between commands. */
  private watchTransport(onLog: ((line: string) => void) | undefined): void {
    if (onLog) this.logListeners.add(onLog);
    const lines = new LineSplitter((line) => this.log(line));
    this.transport.stderr.on('data', (chunk: Buffer | string) => lines.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)));
    this.transport.stderr.on('end', () => lines.end());
    this.transport.stderr.on('error', () => undefined);
    this.transport.stdin.on('error', (error: Error) => {
      this.writeError ??= error;
    });
    const lost = () => this.noteLost();
    this.transport.stdout.once('close', lost);
    this.transport.stdin.once('close', lost);
  }

  private log(line: string): void {
    this.stderrTail.push(line);
    if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
    for (const listener of this.logListeners) listener(line);
  }

  private noteLost(): void {
    this.broken ??= new ServeConnectionLostError(`The connection to ${this.host} has ended.`, this.host);
  }

  private send(message: Serializer): Promise<void> {
    return this.write(message.flush());
  }

  /** Writes with back-pressure: waits for `drain` when the pipe is full. */
  private write(bytes: Buffer): Promise<void> {
    const stdin = this.transport.stdin;
    if (this.writeError) return Promise.reject(this.writeError);
    if (stdin.destroyed || stdin.writableEnded) {
      return Promise.reject(new ServeStreamEndedError(`The input of nix-store --serve on ${this.host} is closed.`));
    }
    if (stdin.write(bytes)) return Promise.resolve();
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

function seconds(value: number | undefined, name: string): number {
  const n = value ?? 0;
  if (!Number.isSafeInteger(n) || n < 0) throw new OffloadError(`Build option ${name} must be a whole number ≥ 0, not ${n}.`);
  return n;
}
