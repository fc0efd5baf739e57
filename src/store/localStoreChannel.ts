import type { BuildResult } from '../remote/buildResult.js';
import { ServeClient, type NarHashCheck, type NarStream, type PathInfo } from '../remote/serveClient.js';
import { ServeConnectionLostError } from '../remote/serveConnectionLostError.js';
import { assertStorePath, DEFAULT_STORE_DIR } from '../storePath/storePath.js';
import { openLocalNixDatabase, type NixDatabase } from './nixDatabase.js';
import { spawnServe } from './spawnServe.js';

export interface LocalStoreChannelOptions {
  /** Nix's `store` setting: where it is opened in-process, questions are answered from its database. */
  store: string | undefined;
  storeDir?: string;
  /** See ServeClientOptions.buildFromStoreDerivations. */
  buildFromStoreDerivations?: boolean;
  debug?: (message: string) => void;
}

/**
 * A serve channel to the local store: where Nix's database can be read in
 * this process (store/nixDatabase.ts), a LocalStoreChannel, else a
 * `nix-store --serve --write` as before.
 */
export async function openLocalStoreChannel(options: LocalStoreChannelOptions): Promise<LocalStoreChannel | ServeClient> {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  const startServe = async () => ServeClient.open(await spawnServe(), { storeDir, buildFromStoreDerivations: options.buildFromStoreDerivations ?? false });
  const database = openLocalNixDatabase({ store: options.store, storeDir, ...(options.debug ? { debug: options.debug } : {}) });
  return database ? new LocalStoreChannel(database, startServe, storeDir) : startServe();
}

/**
 * The local store as a serve channel whose questions (validity, closure,
 * path infos) Nix's database answers in this process, and whose work
 * (NARs out and in, builds) goes to a `nix-store --serve --write` started
 * when the first such operation comes: writing into the store goes through
 * Nix. A run that only uploads from the local store starts none. Questions
 * the database cannot answer go to that process too, as does a validity
 * query that locks (temporary GC roots are the process's) or substitutes.
 */
export class LocalStoreChannel {
  private serve: Promise<ServeClient> | undefined;
  private client: ServeClient | undefined;
  private closed = false;
  private startFailed = false;

  constructor(
    private readonly database: NixDatabase,
    private readonly startServe: () => Promise<ServeClient>,
    private readonly storeDir: string = DEFAULT_STORE_DIR,
  ) {}

  /** Whether a `nix-store --serve` has been started for this channel: work then need not wait for its start. */
  get ready(): boolean {
    return this.serve !== undefined;
  }

  get usable(): boolean {
    return !this.closed && !this.startFailed && (this.client?.usable ?? true);
  }

  /** As ServeClient.substitutes: a channel whose server has not built anything still substitutes. */
  get substitutes(): boolean {
    return this.client?.substitutes ?? true;
  }

  async queryValidPaths(paths: Iterable<string>, options: { lock?: boolean; substitute?: boolean } = {}): Promise<string[]> {
    const list = this.check(paths, 'A path to query');
    if (!options.lock && !options.substitute) {
      const valid = this.database.validPaths(list);
      if (valid !== undefined) return valid;
    }
    return (await this.server()).queryValidPaths(list, options);
  }

  async queryPathInfos(paths: Iterable<string>): Promise<PathInfo[]> {
    const list = this.check(paths, 'A path to query');
    return this.database.pathInfos(list) ?? (await this.server()).queryPathInfos(list);
  }

  /** Without outputs from the database; a closure with outputs, or of a path that is not valid (an error), from nix-store. */
  async queryClosure(paths: Iterable<string>, includeOutputs = false): Promise<string[]> {
    const list = this.check(paths, 'A path to query');
    return (includeOutputs ? undefined : this.database.closure(list)) ?? (await this.server()).queryClosure(list, includeOutputs);
  }

  dumpNars(infos: readonly PathInfo[], options: { hash: NarHashCheck }): AsyncGenerator<NarStream> {
    const self = this;
    async function* generate(): AsyncGenerator<NarStream> {
      yield* (await self.server()).dumpNars(infos, options);
    }
    return generate();
  }

  async addNars(nars: AsyncIterable<NarStream>, options: { onBytes?: (bytes: number) => void } = {}): Promise<number> {
    return (await this.server()).addNars(nars, options);
  }

  async buildDerivation(...args: Parameters<ServeClient['buildDerivation']>): Promise<BuildResult> {
    return (await this.server()).buildDerivation(...args);
  }

  /** Starts the server now, for work to come (a copy back while the builder builds), so that work does not wait for its start. */
  prepare(): void {
    if (!this.closed) this.server().catch(() => undefined);
  }

  /** Stops the server if one was started (or is starting); later operations fail as on a closed ServeClient. */
  close(): void {
    this.closed = true;
    this.client?.close();
    void this.serve?.then(
      (client) => client.close(),
      () => undefined,
    );
  }

  private server(): Promise<ServeClient> {
    if (this.closed) return Promise.reject(this.closedError());
    this.serve ??= this.startServe().then(
      (client) => {
        this.client = client;
        if (this.closed) client.close();
        return client;
      },
      (error: unknown) => {
        // The pool then discards this channel rather than lend it again.
        this.startFailed = true;
        throw error;
      },
    );
    return this.serve;
  }

  private check(paths: Iterable<string>, what: string): string[] {
    if (this.closed) throw this.closedError();
    const list = [...paths];
    for (const path of list) assertStorePath(path, what, this.storeDir);
    return list;
  }

  private closedError(): ServeConnectionLostError {
    return new ServeConnectionLostError('The connection to local was closed by offload.', 'local');
  }
}
