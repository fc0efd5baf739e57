import type { PathInfo } from '../remote/serveClient.js';
import type { StoreChannel } from './storeChannel.js';

/**
 * What the local store said about its paths, for the run: a valid path's
 * references, NAR hash and size never change, so each is asked once, not
 * once per job that uploads it. The run asks ahead for the first jobs'
 * local inputs (runStart.ts) while the builders' connections are still
 * being made, and their uploads then start without the two queries
 * (closure, path infos) that would otherwise come first.
 *
 * Only answers the local store gave are kept, and a question about a path
 * it has not described goes to the store, so an invalid path still fails
 * there as it would without the cache. A path deleted meanwhile fails its
 * export, as it would have between the queries and the export anyway.
 */
export class LocalPathInfos {
  private readonly infos = new Map<string, PathInfo>();
  /** A look-ahead in flight: questions wait for it rather than asking the same thing on another channel. */
  private ahead: Promise<void> | undefined;

  /** Asks for `paths`, their closure and its infos over `channel`; what fails here is asked again when needed. */
  lookAhead(local: StoreChannel, paths: readonly string[]): Promise<void> {
    // Through the cache, the questions would wait for this very look-ahead.
    const channel = local instanceof CachingChannel ? local.inner : local;
    const asking = (async () => {
      const closure = [...(await channel.queryClosure([...paths], false))];
      this.remember(await channel.queryPathInfos(closure.filter((p) => !this.infos.has(p))));
    })();
    const settled = asking.catch(() => undefined);
    this.ahead = settled;
    void settled.then(() => {
      if (this.ahead === settled) this.ahead = undefined;
    });
    return asking;
  }

  /** A local channel whose closure and path-info questions the cache answers where it can. */
  wrap(channel: StoreChannel): StoreChannel {
    return new CachingChannel(channel, this);
  }

  /** The closure of `paths` (without outputs) if every path in it has been described, else undefined. */
  async closure(paths: readonly string[]): Promise<string[] | undefined> {
    await this.ahead;
    const seen = new Set<string>();
    const stack = [...paths];
    for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
      if (seen.has(p)) continue;
      const info = this.infos.get(p);
      if (!info) return undefined;
      seen.add(p);
      for (const ref of info.references) if (!seen.has(ref)) stack.push(ref);
    }
    return [...seen];
  }

  /** The described ones among `paths`, and the ones still to ask about. */
  async known(paths: readonly string[]): Promise<{ infos: PathInfo[]; unknown: string[] }> {
    await this.ahead;
    const infos: PathInfo[] = [];
    const unknown: string[] = [];
    for (const p of paths) {
      const info = this.infos.get(p);
      if (info) infos.push(info);
      else unknown.push(p);
    }
    return { infos, unknown };
  }

  remember(infos: Iterable<PathInfo>): void {
    for (const info of infos) this.infos.set(info.path, info);
  }
}

class CachingChannel implements StoreChannel {
  constructor(
    private readonly channel: StoreChannel,
    private readonly cache: LocalPathInfos,
  ) {}

  get inner(): StoreChannel {
    return this.channel;
  }

  get usable(): boolean | undefined {
    return this.channel.usable;
  }

  get substitutes(): boolean | undefined {
    return this.channel.substitutes;
  }

  queryValidPaths(...args: Parameters<StoreChannel['queryValidPaths']>): ReturnType<StoreChannel['queryValidPaths']> {
    return this.channel.queryValidPaths(...args);
  }

  async queryClosure(paths: string[], includeOutputs: boolean): Promise<Iterable<string>> {
    if (!includeOutputs) {
      const known = await this.cache.closure(paths);
      if (known) return known;
    }
    return this.channel.queryClosure(paths, includeOutputs);
  }

  async queryPathInfos(paths: string[]): Promise<PathInfo[]> {
    const { infos, unknown } = await this.cache.known(paths);
    if (unknown.length === 0) return infos;
    const asked = await this.channel.queryPathInfos(unknown);
    this.cache.remember(asked);
    return [...infos, ...asked];
  }

  dumpNars(...args: Parameters<StoreChannel['dumpNars']>): ReturnType<StoreChannel['dumpNars']> {
    return this.channel.dumpNars(...args);
  }

  addNars(...args: Parameters<StoreChannel['addNars']>): ReturnType<StoreChannel['addNars']> {
    return this.channel.addNars(...args);
  }

  buildDerivation(...args: Parameters<StoreChannel['buildDerivation']>): ReturnType<StoreChannel['buildDerivation']> {
    return this.channel.buildDerivation(...args);
  }

  get ready(): boolean | undefined {
    return this.channel.ready;
  }

  prepare(): void {
    this.channel.prepare?.();
  }

  close(): void | Promise<void> {
    return this.channel.close();
  }
}
