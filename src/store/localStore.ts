import { Readable } from 'node:stream';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { ExportedPath } from '../remote/exportStream.js';
import type { ByteSource } from '../remote/serveCodec/parser.js';
import { assertStorePath, DEFAULT_STORE_DIR } from '../storePath/storePath.js';
import { ServeClient, type PathInfo } from '../remote/serveClient.js';
import { openLocalNixDatabase } from './nixDatabase.js';
import { NixStoreNotFoundError, nixStoreRunnable, spawnServe, type SpawnServeOptions } from './spawnServe.js';

export interface LocalStoreOptions extends SpawnServeOptions {
  storeDir?: string;
  /** Local `nix-store --serve` processes kept at most (default 4). */
  maxConnections?: number;
  /** Lines the local servers print on stderr (warnings, errors). */
  onLog?: (line: string) => void;
}

/**
 * The local Nix store, spoken to through the same serve protocol as the
 * builders (`nix-store --serve --write` children), so export and import use
 * one code path on both ends.
 *
 * A small pool of long-lived children rather than one per operation: a run
 * makes thousands of queries, exports and imports, and each child costs a
 * process start and a store open; several children let exports and imports
 * for different jobs overlap. A side effect worth keeping: paths queried
 * with `lock` stay GC roots until the store is closed.
 */
export class LocalStore {
  private readonly storeDir: string;
  private readonly maxConnections: number;
  private readonly idle: ServeClient[] = [];
  private readonly everyClient = new Set<ServeClient>();
  private readonly waitingForClient: (() => void)[] = [];
  private freePermits: number;
  private closed = false;

  constructor(private readonly options: LocalStoreOptions = {}) {
    this.storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
    this.maxConnections = Math.max(1, options.maxConnections ?? 4);
    this.freePermits = this.maxConnections;
  }

  async validPaths(paths: Iterable<string>, options: { lock?: boolean } = {}): Promise<Set<string>> {
    // No shortcut for an empty list: queryValidLocalPaths relies on a real round trip to detect Nix.
    const list = this.check(paths, 'A path to check');
    return new Set(await this.withClient((client) => client.queryValidPaths(list, { lock: options.lock ?? false })));
  }

  /**
   * Substitutes `paths` (and their missing references) from Nix's own
   * substituters, then says which are valid. Nix checks signatures and NAR
   * hashes and registers the paths, so nothing half-fetched ever becomes
   * valid; a path it could not fetch is simply not in the answer, and
   * `onLog` hears why.
   */
  async substitute(paths: Iterable<string>, onLog?: (line: string) => void): Promise<Set<string>> {
    const list = this.check(paths, 'A path to fetch');
    return new Set(
      await this.withClient(async (client) => {
        const stop = onLog ? client.onLog(onLog) : undefined;
        try {
          return await client.queryValidPaths(list, { lock: true, substitute: true });
        } finally {
          stop?.();
        }
      }),
    );
  }

  async closure(paths: Iterable<string>, includeOutputs = false): Promise<string[]> {
    const list = this.check(paths, 'A path whose closure to compute');
    if (list.length === 0) return [];
    return this.withClient((client) => client.queryClosure(list, includeOutputs));
  }

  async pathInfos(paths: Iterable<string>): Promise<PathInfo[]> {
    const list = this.check(paths, 'A path to describe');
    if (list.length === 0) return [];
    return this.withClient((client) => client.queryPathInfos(list));
  }

  /** An export stream of `paths` (dependencies first) from the local store. */
  exportPaths(paths: Iterable<string>, options: { onPath?: (info: ExportedPath) => void } = {}): Readable {
    const list = this.check(paths, 'A path to export');
    const self = this;
    async function* generate(): AsyncGenerator<Buffer> {
      const client = await self.takeClient();
      let completed = false;
      try {
        yield* client.exportPaths(list, options);
        completed = true;
      } finally {
        // An export stopped early leaves the child mid-reply; it must not serve the next operation.
        self.giveBack(client, completed);
      }
    }
    return Readable.from(generate(), { objectMode: false });
  }

  /** Imports an export stream into the local store; resolves with the paths it held. */
  async importPaths(
    source: ByteSource,
    options: { onPath?: (info: ExportedPath) => void } = {},
  ): Promise<ExportedPath[]> {
    return this.withClient((client) => client.importPaths(source, options));
  }

  /** An idle server leaves the store's care, open, for the caller to use and close; undefined when none is idle. */
  detachIdle(): ServeClient | undefined {
    const client = this.idle.pop();
    if (client !== undefined) this.everyClient.delete(client);
    return client;
  }

  /** Stops every local server; operations still running fail with ServeConnectionLostError. */
  close(): void {
    this.closed = true;
    for (const client of this.everyClient) client.close();
    this.everyClient.clear();
    this.idle.length = 0;
    for (const grant of this.waitingForClient.splice(0)) grant();
  }

  private check(paths: Iterable<string>, what: string): string[] {
    const list = [...paths];
    for (const path of list) assertStorePath(path, what, this.storeDir);
    return list;
  }

  private async withClient<T>(body: (client: ServeClient) => Promise<T>): Promise<T> {
    const client = await this.takeClient();
    try {
      return await body(client);
    } finally {
      this.giveBack(client);
    }
  }

  private async takeClient(): Promise<ServeClient> {
    while (this.freePermits === 0 && !this.closed) await new Promise<void>((grant) => this.waitingForClient.push(grant));
    if (this.closed) throw new OffloadError('The local store connection was already closed.', ExitCode.badInput);
    this.freePermits--;
    try {
      let client = this.idle.pop();
      while (client !== undefined && !client.usable) {
        this.forget(client);
        client = this.idle.pop();
      }
      return client ?? (await this.spawnClient());
    } catch (error) {
      this.releasePermit();
      throw error;
    }
  }

  private giveBack(client: ServeClient, reusable = true): void {
    if (reusable && client.usable && !this.closed) this.idle.push(client);
    else this.forget(client);
    this.releasePermit();
  }

  private releasePermit(): void {
    this.freePermits++;
    this.waitingForClient.shift()?.();
  }

  private forget(client: ServeClient): void {
    client.close();
    this.everyClient.delete(client);
  }

  private async spawnClient(): Promise<ServeClient> {
    const transport = await spawnServe(this.options);
    const client = await ServeClient.open(transport, {
      storeDir: this.storeDir,
      ...(this.options.onLog ? { onLog: this.options.onLog } : {}),
    });
    this.everyClient.add(client);
    return client;
  }
}

export interface LocalQueryOptions extends Omit<LocalStoreOptions, 'maxConnections'> {
  /**
   * Nix's `store` setting (MachinesConfig local.store). Where local Nix
   * commands open that store in their own process, its database answers
   * here (store/nixDatabase.ts) and no `nix-store --serve` is started;
   * without it, or where the database cannot answer, one is.
   */
  store?: string;
  /** Why the database was not read, for the debug log. */
  debug?: (message: string) => void;
}

/**
 * The subset of `paths` valid in the local store, or null when Nix is not
 * installed: `plan` works on machines without Nix, it just cannot tell what
 * is already built.
 */
export async function queryValidLocalPaths(paths: Iterable<string>, options: LocalQueryOptions = {}): Promise<Set<string> | null> {
  return (await askValidLocalPaths(paths, options, false))?.valid ?? null;
}

/**
 * As queryValidLocalPaths, and the `nix-store --serve --write` that answered
 * stays open for the caller, who uses it or closes it: a run's first local
 * channel need not start another (a process start and a store open).
 *
 * Where Nix's database can answer, it is first asked about `decisive` (the
 * roots' outputs): all valid, and nothing will be built, so it answers the
 * rest too and no nix-store starts. Otherwise a run follows that will need
 * a local nix-store (the copy back's importer): it starts now and answers,
 * on a core of its own while builders are logged in to, rather than this
 * process reading the database (~50 ms for 300 paths) and starting the
 * importer later anyway (measured: 0.1 s more wall for 300 uploaded paths).
 */
export async function queryValidLocalPathsKeepingServe(
  paths: Iterable<string>,
  options: LocalQueryOptions & { decisive?: readonly string[] } = {},
): Promise<{ valid: Set<string>; serve: ServeClient | undefined } | null> {
  return askValidLocalPaths(paths, options, true);
}

async function askValidLocalPaths(paths: Iterable<string>, options: LocalQueryOptions & { decisive?: readonly string[] }, keep: boolean): Promise<{ valid: Set<string>; serve: ServeClient | undefined } | null> {
  const { store: storeSetting, debug, decisive, ...serveOptions } = options;
  const database = openLocalNixDatabase({ store: storeSetting, ...(options.storeDir ? { storeDir: options.storeDir } : {}), ...(options.env ? { env: options.env } : {}), ...(debug ? { debug } : {}) });
  if (database) {
    const list = [...paths];
    for (const path of list) assertStorePath(path, 'A path to check', options.storeDir ?? DEFAULT_STORE_DIR);
    // The round trip to nix-store is what told that Nix is not installed; without one, PATH tells.
    if (!nixStoreRunnable(options.nixStoreBin, options.env)) return null;
    const runFollows = keep && decisive !== undefined && database.validPaths(decisive)?.length !== new Set(decisive).size;
    const valid = runFollows ? undefined : database.validPaths(list);
    if (valid !== undefined) return { valid: new Set(valid), serve: undefined };
    paths = list;
  }
  const store = new LocalStore({ ...serveOptions, maxConnections: 1 });
  try {
    const valid = await store.validPaths(paths);
    return { valid, serve: keep ? store.detachIdle() : undefined };
  } catch (error) {
    if (error instanceof NixStoreNotFoundError) return null;
    throw error;
  } finally {
    store.close();
  }
}
