import { formatNixBase32, parseNixHash } from '../../storePath/nixHash.js';
import { storePathProblem } from '../../storePath/storePath.js';

/** What a binary cache says about one store path (`<hash>.narinfo`). */
export interface NarInfo {
  storePath: string;
  /** Where the (compressed) NAR is, relative to the cache. */
  url: string;
  compression: string;
  /** Bytes to download; undefined when the cache does not say. */
  fileSize?: number;
  /** `sha256:<base32>`, normalised so fingerprints match Nix's. */
  narHash: string;
  narSize: number;
  /** Full store paths, sorted as Nix sorts them. */
  references: string[];
  deriver?: string;
  /** `keyname:base64`, one per `Sig:` line. */
  sigs: string[];
  ca?: string;
}

export class NarInfoError extends Error {}

/**
 * Parses a narinfo the way Nix does, and checks what a cache could lie about
 * before it reaches the plan: the store path must be the one asked for, and
 * hashes, sizes and references must be well formed. Unknown keys are
 * ignored, as Nix ignores them.
 */
export function parseNarInfo(text: string, expectedPath: string, storeDir: string): NarInfo {
  const fields = new Map<string, string>();
  const sigs: string[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const colon = line.indexOf(': ');
    if (colon < 0) throw new NarInfoError(`line ${JSON.stringify(line.slice(0, 80))} is not "Key: value"`);
    const key = line.slice(0, colon);
    const value = line.slice(colon + 2);
    if (key === 'Sig') sigs.push(value);
    else fields.set(key, value);
  }
  const need = (key: string): string => {
    const value = fields.get(key);
    if (value === undefined) throw new NarInfoError(`it has no ${key}`);
    return value;
  };
  const storePath = need('StorePath');
  if (storePath !== expectedPath) throw new NarInfoError(`it describes ${storePath}, not ${expectedPath}`);
  const narHash = parseNixHash(need('NarHash'));
  if (!narHash) throw new NarInfoError(`its NarHash ${JSON.stringify(fields.get('NarHash'))} is not a hash`);
  const narSize = parseSize(need('NarSize'), 'NarSize');
  if (narSize === 0) throw new NarInfoError('its NarSize is 0');
  const fileSizeText = fields.get('FileSize');
  const references = (fields.get('References') ?? '')
    .split(' ')
    .filter((r) => r !== '')
    .map((base) => `${storeDir}/${base}`);
  for (const ref of references) {
    const problem = storePathProblem(ref, storeDir);
    if (problem !== undefined) throw new NarInfoError(`its reference ${JSON.stringify(ref)} is not a store path: ${problem}`);
  }
  const deriver = fields.get('Deriver');
  const ca = fields.get('CA');
  return {
    storePath,
    url: need('URL'),
    compression: fields.get('Compression') ?? 'bzip2',
    ...(fileSizeText !== undefined ? { fileSize: parseSize(fileSizeText, 'FileSize') } : {}),
    narHash: formatNixBase32(narHash),
    narSize,
    references: [...new Set(references)].sort(),
    ...(deriver !== undefined && deriver !== 'unknown-deriver' ? { deriver: `${storeDir}/${deriver}` } : {}),
    sigs,
    ...(ca !== undefined && ca !== '' ? { ca } : {}),
  };
}

function parseSize(text: string, key: string): number {
  if (!/^\d{1,15}$/.test(text)) throw new NarInfoError(`its ${key} ${JSON.stringify(text.slice(0, 40))} is not a size`);
  return Number(text);
}

/** `nix-cache-info`: the cache's store directory, whether to mass-query it, and its priority. */
export interface CacheInfo {
  storeDir: string;
  wantMassQuery: boolean;
  priority: number;
}

/** Nix's defaults for a cache whose nix-cache-info leaves a key out. */
export const DEFAULT_CACHE_PRIORITY = 50;

export function parseCacheInfo(text: string): CacheInfo {
  const info: CacheInfo = { storeDir: '/nix/store', wantMassQuery: false, priority: DEFAULT_CACHE_PRIORITY };
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === 'StoreDir') info.storeDir = value;
    else if (key === 'WantMassQuery') info.wantMassQuery = value === '1';
    else if (key === 'Priority' && /^\d+$/.test(value)) info.priority = Number(value);
  }
  return info;
}
