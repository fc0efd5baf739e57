import { BadInputError } from '../../errors/offloadError.js';

/** A substituter URL as Nix reads it: `http(s)://…` or `file://…`, with optional `?priority=…&trusted=…`. */
export interface CacheUrl {
  /** The URL as configured, without its parameters: how messages name the cache. */
  url: string;
  /** Exactly as configured, parameters included. */
  configured: string;
  scheme: 'http' | 'https' | 'file';
  /** Base for HTTP requests, or the directory of a file:// cache. */
  base: string;
  /** `?priority=N` overrides the cache's own nix-cache-info. */
  priority?: number;
  /** `?trusted=1`: its narinfos need no signature (Nix's store setting). */
  trusted: boolean;
}

/** A substituter offload cannot query: the user's setting, so bad input. */
export class UnsupportedCacheError extends BadInputError {}

/** Parses one entry of `substituters`; throws UnsupportedCacheError for schemes offload cannot query. */
export function parseCacheUrl(text: string): CacheUrl {
  const query = text.indexOf('?');
  const bare = (query < 0 ? text : text.slice(0, query)).replace(/\/+$/, '');
  const params = new URLSearchParams(query < 0 ? '' : text.slice(query + 1));
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//.exec(bare)?.[1];
  if (scheme !== 'http' && scheme !== 'https' && scheme !== 'file') {
    throw new UnsupportedCacheError(`substituter ${JSON.stringify(text)}: offload can ask only http://, https:// and file:// caches`);
  }
  const priorityText = params.get('priority');
  const priority = priorityText !== null && /^\d+$/.test(priorityText) ? Number(priorityText) : undefined;
  const trustedText = params.get('trusted');
  return {
    url: bare,
    configured: text,
    scheme,
    base: scheme === 'file' ? decodeURIComponent(bare.slice('file://'.length)) || '/' : bare,
    ...(priority !== undefined ? { priority } : {}),
    trusted: trustedText === '1' || trustedText === 'true',
  };
}
