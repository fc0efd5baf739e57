import { readFile } from 'node:fs/promises';
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as Zlib from 'node:zlib';
import type { CacheUrl } from './cacheUrl.js';

const load = createRequire(import.meta.url);
let httpModules: { http: typeof Http; https: typeof Https } | undefined;
/**
 * http and https (with tls) load when a run first asks an HTTP cache, not
 * with the bundle: they were ~7 ms of CPU of every start (measured), and a
 * run without caches, or with file:// ones, never needs them.
 */
const web = () => (httpModules ??= { http: load('node:http') as typeof Http, https: load('node:https') as typeof Https });

/** The cache cannot be reached at all (connection refused or timed out, no such host, no such directory). */
export class CacheUnreachableError extends Error {}

/** The cache answered, but not with the file or a clean "not here". */
export class CacheAnswerError extends Error {
  constructor(
    message: string,
    /** A retry may succeed (connection reset, server error). */
    readonly transient = false,
  ) {
    super(message);
  }
}

const ATTEMPTS = 3;
const TRANSIENT_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

export interface CacheFileOptions {
  /** Milliseconds to establish a connection before the cache counts as unreachable. */
  connectTimeoutMs: number;
  /** Milliseconds of silence on an open connection before the request fails. */
  idleTimeoutMs: number;
}

/** Narinfos are small; a bigger answer is not a narinfo. */
const MAX_BYTES = 1 << 20;

/**
 * Reads one small file of a binary cache (`nix-cache-info`, `<hash>.narinfo`):
 * its text, or null when the cache says it has no such file (HTTP 404/403,
 * missing file). HTTP uses keep-alive agents, so a run's queries share a few
 * connections per cache.
 */
export class CacheFiles {
  private agentsMade: { http: Http.Agent; https: Https.Agent } | undefined;

  constructor(
    private readonly options: CacheFileOptions & { maxSockets: number },
  ) {}

  private get agents(): { http: Http.Agent; https: Https.Agent } {
    const agent = { keepAlive: true, maxSockets: this.options.maxSockets };
    return (this.agentsMade ??= { http: new (web().http.Agent)(agent), https: new (web().https.Agent)(agent) });
  }

  async get(cache: CacheUrl, file: string): Promise<string | null> {
    if (cache.scheme === 'file') return this.readLocal(cache, file);
    // Like Nix's download-attempts: a reset keep-alive socket or a 5xx is worth another try.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.request(cache, `${cache.base}/${file}`);
      } catch (error) {
        if (!(error instanceof CacheAnswerError) || !error.transient || attempt >= ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
      }
    }
  }

  close(): void {
    this.agentsMade?.http.destroy();
    this.agentsMade?.https.destroy();
  }

  private async readLocal(cache: CacheUrl, file: string): Promise<string | null> {
    try {
      return await readFile(join(cache.base, file), 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && file !== 'nix-cache-info') return null;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES') throw new CacheUnreachableError(`${join(cache.base, file)}: ${(error as Error).message}`);
      throw new CacheAnswerError(`${join(cache.base, file)}: ${(error as Error).message}`);
    }
  }

  private request(cache: CacheUrl, url: string): Promise<string | null> {
    const { connectTimeoutMs, idleTimeoutMs } = this.options;
    const client = cache.scheme === 'https' ? web().https : web().http;
    const agent = cache.scheme === 'https' ? this.agents.https : this.agents.http;
    return new Promise((resolve, reject) => {
      const req = client.get(url, { agent, headers: { 'accept-encoding': 'gzip, deflate, br' } }, (res) => {
        const status = res.statusCode ?? 0;
        if (status === 404 || status === 403 || status === 410) {
          res.resume();
          resolve(null);
          return;
        }
        if (status !== 200) {
          res.resume();
          reject(new CacheAnswerError(`${url}: HTTP ${status}`, status >= 500));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BYTES) req.destroy(new CacheAnswerError(`${url}: more than ${MAX_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('end', () => {
          try {
            resolve(decode(Buffer.concat(chunks), res.headers['content-encoding']));
          } catch (error) {
            reject(new CacheAnswerError(`${url}: ${(error as Error).message}`));
          }
        });
        res.on('error', (error) => reject(new CacheAnswerError(`${url}: ${error.message}`)));
      });
      // A cache that accepts connections but never answers is as good as unreachable.
      req.setTimeout(idleTimeoutMs, () => req.destroy(new CacheUnreachableError(`no answer within ${idleTimeoutMs / 1000} s`)));
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        const timer = setTimeout(() => req.destroy(new CacheUnreachableError(`no connection within ${connectTimeoutMs / 1000} s`)), connectTimeoutMs);
        socket.once('connect', () => clearTimeout(timer));
        socket.once('close', () => clearTimeout(timer));
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (error instanceof CacheUnreachableError || error instanceof CacheAnswerError) reject(error);
        else if (UNREACHABLE.has(error.code ?? '')) reject(new CacheUnreachableError(error.message));
        else reject(new CacheAnswerError(`${url}: ${error.message}`, TRANSIENT_CODES.has(error.code ?? '') || error.message === 'socket hang up'));
      });
    });
  }
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EADDRNOTAVAIL']);

function decode(body: Buffer, encoding: string | undefined): string {
  if (encoding !== 'gzip' && encoding !== 'x-gzip' && encoding !== 'deflate' && encoding !== 'br') return body.toString('utf8');
  const zlib = load('node:zlib') as typeof Zlib;
  if (encoding === 'deflate') return zlib.inflateSync(body).toString('utf8');
  if (encoding === 'br') return zlib.brotliDecompressSync(body).toString('utf8');
  return zlib.gunzipSync(body).toString('utf8');
}
