import PQueue from 'p-queue';
import type { Substitute } from '../../graph/queryMissing.js';
import { CacheFiles, CacheUnreachableError } from './cacheFiles.js';
import { parseCacheUrl, UnsupportedCacheError, type CacheUrl } from './cacheUrl.js';
import { parseCacheInfo, parseNarInfo, type NarInfo } from './narinfo.js';
import { hasTrustedSignature, parseTrustedKeys, type TrustedKeys } from './signatures.js';

export interface SubstitutersOptions {
  /** `substituters` + `extra-substituters`, in the order Nix lists them. */
  urls: readonly string[];
  trustedPublicKeys: readonly string[];
  /** Nix's `require-sigs` (default true): without a trusted signature a narinfo is not a substitute. */
  requireSigs?: boolean;
  storeDir: string;
  /** Narinfo requests in flight at once, over all caches. */
  concurrency?: number;
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** One line per problem, each said once per run. */
  warn: (message: string) => void;
}

/** A substitute as the planner sees it, with the narinfo it came from. */
export interface CacheSubstitute extends Substitute {
  narInfo: NarInfo;
}

interface CacheState {
  url: CacheUrl;
  /** Resolved once: null when the cache is unusable for this run. */
  ready: Promise<{ priority: number } | null>;
  down: boolean;
  /** Errors other than unreachability are said once per cache. */
  complained: boolean;
  unsigned: string[];
}

/** Nix's default http-connections is 25; narinfo lookups are tiny. */
const DEFAULT_CONCURRENCY = 25;
/** Short on purpose: an unreachable cache should cost seconds, and be dropped for the run. */
export const DEFAULT_CACHE_CONNECT_TIMEOUT_S = 5;

/**
 * The run's binary caches, asked directly over HTTP(S) or the file system as
 * Nix does (nix-cache-info, then `<hash>.narinfo`): in priority order, the
 * first cache with a narinfo signed by a trusted key wins. Requests run
 * concurrently under one bound; every answer, negative ones included, is kept
 * for the run; a cache that cannot be reached is said once and then skipped.
 */
export class Substituters {
  private readonly caches: CacheState[] = [];
  private readonly files: CacheFiles;
  private readonly queue: PQueue;
  private readonly keys: TrustedKeys;
  private readonly answers = new Map<string, Promise<CacheSubstitute | null>>();
  private readonly requireSigs: boolean;
  private warnedUnsigned = false;

  constructor(private readonly options: SubstitutersOptions) {
    this.requireSigs = options.requireSigs ?? true;
    this.keys = parseTrustedKeys(options.trustedPublicKeys, options.warn);
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    this.queue = new PQueue({ concurrency });
    this.files = new CacheFiles({
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CACHE_CONNECT_TIMEOUT_S * 1000,
      // A cache that accepts connections and then says nothing is as good as unreachable, a little later.
      idleTimeoutMs: options.idleTimeoutMs ?? 3 * (options.connectTimeoutMs ?? DEFAULT_CACHE_CONNECT_TIMEOUT_S * 1000),
      maxSockets: concurrency,
    });
    const seen = new Set<string>();
    for (const text of options.urls) {
      let url: CacheUrl;
      try {
        url = parseCacheUrl(text);
      } catch (error) {
        if (!(error instanceof UnsupportedCacheError)) throw error;
        options.warn(`${error.message}; paths only it has are built`);
        continue;
      }
      if (seen.has(url.url)) continue;
      seen.add(url.url);
      const state: CacheState = { url, ready: Promise.resolve(null), down: false, complained: false, unsigned: [] };
      state.ready = this.open(state);
      this.caches.push(state);
    }
  }

  /** The caches asked, as configured (without parameters). */
  get urls(): string[] {
    return this.caches.map((c) => c.url.url);
  }

  /** The caches not found unreachable, as configured (parameters kept): what Nix should fetch from. */
  liveUrls(): string[] {
    return this.caches.filter((c) => !c.down).map((c) => c.url.configured);
  }

  /** What the caches offer for each path (null: none has it, or none with a trusted signature). */
  async query(paths: Iterable<string>): Promise<Map<string, CacheSubstitute | null>> {
    const list = [...new Set(paths)];
    const answers = await Promise.all(list.map((p) => this.lookup(p)));
    return new Map(list.map((p, i) => [p, answers[i]!]));
  }

  /** Says, once, which caches served narinfos without a trusted signature. */
  reportUnsigned(): void {
    if (this.warnedUnsigned) return;
    for (const c of this.caches) {
      if (c.unsigned.length === 0) continue;
      this.warnedUnsigned = true;
      const n = c.unsigned.length;
      this.options.warn(
        `${c.url.url} has ${n} path${n === 1 ? '' : 's'} without a valid signature by a trusted key (${c.unsigned[0]}${n > 1 ? ', …' : ''}); ${n === 1 ? 'it is' : 'they are'} not used as substitutes`,
      );
    }
  }

  close(): void {
    this.queue.clear();
    this.files.close();
  }

  private lookup(path: string): Promise<CacheSubstitute | null> {
    let answer = this.answers.get(path);
    if (!answer) this.answers.set(path, (answer = this.ask(path)));
    return answer;
  }

  private async ask(path: string): Promise<CacheSubstitute | null> {
    const ready = await Promise.all(this.caches.map((c) => c.ready));
    const order = this.caches
      .map((c, i) => ({ c, priority: ready[i]?.priority }))
      .filter((x): x is { c: CacheState; priority: number } => x.priority !== undefined)
      .sort((a, b) => a.priority - b.priority);
    const hash = path.slice(this.options.storeDir.length + 1, this.options.storeDir.length + 33);
    for (const { c } of order) {
      if (c.down) continue;
      const text = await this.queue.add(async () => (c.down ? null : this.files.get(c.url, `${hash}.narinfo`).catch((e: unknown) => this.failed(c, e))));
      if (text === null || text === undefined) continue;
      let info: NarInfo;
      try {
        info = parseNarInfo(text, path, this.options.storeDir);
      } catch (error) {
        this.options.warn(`${c.url.url}/${hash}.narinfo is not usable (${(error as Error).message}); not a substitute for ${path}`);
        continue;
      }
      if (this.requireSigs && !c.url.trusted && !hasTrustedSignature(info, this.keys)) {
        c.unsigned.push(path);
        continue;
      }
      return { references: info.references, narSize: info.narSize, ...(info.fileSize !== undefined ? { fileSize: info.fileSize } : {}), cache: c.url.url, narInfo: info };
    }
    return null;
  }

  private async open(c: CacheState): Promise<{ priority: number } | null> {
    try {
      const text = await this.queue.add(() => this.files.get(c.url, 'nix-cache-info'));
      const info = parseCacheInfo(text ?? '');
      if (text === null && c.url.scheme !== 'file') {
        this.options.warn(`${c.url.url} does not appear to be a binary cache (it has no nix-cache-info); it is not used`);
        return null;
      }
      if (info.storeDir !== this.options.storeDir) {
        this.options.warn(`${c.url.url} is a cache for store ${info.storeDir}, not ${this.options.storeDir}; it is not used`);
        return null;
      }
      return { priority: c.url.priority ?? info.priority };
    } catch (error) {
      this.failed(c, error);
      return null;
    }
  }

  /** A failed request: an unreachable cache is dropped for the run (said once); anything else is that path's miss. */
  private failed(c: CacheState, error: unknown): null {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof CacheUnreachableError) {
      if (!c.down) this.options.warn(`cache ${c.url.url} is unreachable (${message}); paths only it has are built`);
      c.down = true;
      return null;
    }
    if (!c.complained) this.options.warn(`cache ${c.url.url} failed to answer (${message}); paths it does not answer for are built`);
    c.complained = true;
    return null;
  }
}
