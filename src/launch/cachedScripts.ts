import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { Script } from 'node:vm';

/**
 * The bundle's CommonJS files, each compiled with the V8 code cache kept
 * beside it (`<file>.codecache`), so a start deserializes the bytecode a
 * build made instead of parsing and compiling ~1 MB of JavaScript again.
 * Node 20 has no module.enableCompileCache and no code cache for ES
 * modules; a CommonJS file compiled by vm.Script takes one.
 *
 * A cache is used only when it was made from exactly these bytes: its
 * header holds the SHA-256 of the source it was made from, and V8 checks
 * only the source's length, so without that key an edited file of the same
 * length would run the old code. V8 itself refuses data from another V8
 * version or other flags; then the file compiles as if there were no cache.
 * Nothing here writes at run time: the caches are made when the bundle is
 * built (scripts/bundle.mjs), so an install in a read-only place (a Nix
 * store) loads the same way.
 */

export const CODE_CACHE_SUFFIX = '.codecache';
const MAGIC = Buffer.from('offload code cache 1\n');
const DIGEST_BYTES = 32;

/** What happened to a file's cache: used, none beside it, made from other bytes, or refused by V8. */
export type CacheUse = 'used' | 'absent' | 'stale' | 'rejected';

interface Loaded {
  readonly module: { exports: unknown };
  readonly source: Buffer;
  readonly script: Script;
  readonly cache: CacheUse;
}

// The same parameters Node's own CommonJS wrapper passes.
const WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname) { ';
const WRAPPER_TAIL = '\n})';

/**
 * How a file the bundler wrapped itself begins (scripts/bundle.mjs writes it
 * as the bundle's banner, and `});` as its footer). Compiled as a script, the
 * file's value is its module function; required by Node (--debug), it runs
 * as a module. Such a file is compiled as it was read: wrapping it here would
 * make V8 copy the whole source into one flat string before compiling it
 * (~170 page faults for the CLI's bundle, measured).
 */
export const SELF_WRAPPED_HEAD =
  "(function (run) { return this === globalThis ? run : run.call(this, exports, require, module, __filename, __dirname); }).call(this, function (exports, require, module, __filename, __dirname) {";
const selfWrapped = Buffer.from(SELF_WRAPPED_HEAD);

export class CachedScripts {
  private readonly loaded = new Map<string, Loaded>();

  /**
   * Loads a CommonJS file as Node's require() would, compiled with its code
   * cache. Its relative requires (a bundle's other files, such as
   * dist/vendor/ssh2.cjs) load the same way; anything else goes to Node.
   */
  require(file: string): unknown {
    const path = resolve(file);
    const done = this.loaded.get(path);
    if (done) return done.module.exports;
    const source = readFileSync(path);
    const cachedData = cacheFor(path, source);
    const text = source.subarray(0, selfWrapped.length).equals(selfWrapped) ? source.toString('utf8') : WRAPPER_HEAD + source.toString('utf8') + WRAPPER_TAIL;
    const script = new Script(text, { filename: path, ...(cachedData ? { cachedData } : {}) });
    const cache: CacheUse = cachedData === undefined ? 'absent' : cachedData === null ? 'stale' : script.cachedDataRejected ? 'rejected' : 'used';
    const module = { exports: {} as unknown };
    this.loaded.set(path, { module, source, script, cache });
    const nodeRequire = createRequire(path);
    const own = (id: string): unknown => (id.startsWith('./') || id.startsWith('../') ? this.require(resolve(dirname(path), id)) : nodeRequire(id));
    const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
    wrapper.call(module.exports, module.exports, Object.assign(own, { resolve: nodeRequire.resolve, cache: nodeRequire.cache }), module, path, dirname(path));
    return module.exports;
  }

  /** How each file loaded so far used its cache. */
  cacheUse(): Map<string, CacheUse> {
    return new Map([...this.loaded].map(([path, l]) => [path, l.cache]));
  }

  /**
   * Writes a cache beside every file loaded so far. Made after the files
   * ran, it holds the functions their loading compiled too, not only the
   * top level.
   */
  writeCaches(): string[] {
    return [...this.loaded].map(([path, { source, script }]) => {
      writeFileSync(path + CODE_CACHE_SUFFIX, Buffer.concat([MAGIC, sha256(source), script.createCachedData()]));
      return path + CODE_CACHE_SUFFIX;
    });
  }
}

/** The V8 data in a file's cache; null when the cache was made from other bytes, undefined when there is none. */
function cacheFor(path: string, source: Buffer): Buffer | null | undefined {
  let cache: Buffer;
  try {
    cache = readFileSync(path + CODE_CACHE_SUFFIX);
  } catch {
    return undefined;
  }
  const key = cache.subarray(MAGIC.length, MAGIC.length + DIGEST_BYTES);
  if (!cache.subarray(0, MAGIC.length).equals(MAGIC) || !key.equals(sha256(source))) return null;
  return cache.subarray(MAGIC.length + DIGEST_BYTES);
}

function sha256(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}
