import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * Store-path validation is the gate between untrusted derivation text and
 * anything that could reach a shell or another machine: a path that passes
 * here contains only `[A-Za-z0-9+\-._?=]` after the store directory.
 */

export const DEFAULT_STORE_DIR = '/nix/store';

const HASH_LENGTH = 32;
const MAX_NAME_LENGTH = 211;

/** Nix's base32 alphabet: digits and lowercase letters without e, o, t, u. */
const BASE32 = '0123456789abcdfghijklmnpqrsvwxyz';
const isBase32 = asciiTable(BASE32);
const isNameChar = asciiTable(
  'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-._?=',
);

function asciiTable(chars: string): Uint8Array {
  const table = new Uint8Array(128);
  for (let i = 0; i < chars.length; i++) table[chars.charCodeAt(i)] = 1;
  return table;
}

function inTable(table: Uint8Array, code: number): boolean {
  return code < 128 && table[code] === 1;
}

/** Why `p` is not a store path in `storeDir`, or undefined when it is one. */
export function storePathProblem(p: string, storeDir: string = DEFAULT_STORE_DIR): string | undefined {
  const prefix = storeDir.endsWith('/') ? storeDir : storeDir + '/';
  if (!p.startsWith(prefix)) return `it is not inside ${storeDir}`;
  const base = p.slice(prefix.length);
  if (base.length < HASH_LENGTH + 2) return 'it is too short to hold a hash and a name';
  for (let i = 0; i < HASH_LENGTH; i++) {
    if (!inTable(isBase32, base.charCodeAt(i))) return `its hash has the invalid character ${JSON.stringify(base[i])}`;
  }
  if (base.charCodeAt(HASH_LENGTH) !== 0x2d /* - */) return 'its hash is not followed by "-"';
  const problem = pathNameProblem(base.slice(HASH_LENGTH + 1));
  return problem === undefined ? undefined : `its name ${problem}`;
}

/** Why `name` cannot be the name part of a store path (or an output name), or undefined. */
export function pathNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > MAX_NAME_LENGTH) return `is longer than ${MAX_NAME_LENGTH} characters`;
  if (name.startsWith('.')) return 'starts with "."';
  for (let i = 0; i < name.length; i++) {
    if (!inTable(isNameChar, name.charCodeAt(i))) return `has the invalid character ${JSON.stringify(name[i])}`;
  }
  return undefined;
}

export function isStorePath(p: string, storeDir: string = DEFAULT_STORE_DIR): boolean {
  return storePathProblem(p, storeDir) === undefined;
}

export class InvalidStorePathError extends OffloadError {
  readonly path: string;
  readonly what: string;
  constructor(path: string, what: string, problem: string) {
    super(`${what} ${JSON.stringify(truncate(path))} is not a valid store path: ${problem}.`, ExitCode.badInput);
    this.path = path;
    this.what = what;
  }
}

/** Paths can be attacker-sized; keep messages readable. */
function truncate(p: string): string {
  return p.length > 300 ? p.slice(0, 300) + '…' : p;
}

/**
 * @param what says where the path came from, e.g. `input derivation of /nix/store/…-hello.drv`,
 * so the error names its source.
 */
export function assertStorePath(p: string, what: string, storeDir: string = DEFAULT_STORE_DIR): void {
  const problem = storePathProblem(p, storeDir);
  if (problem !== undefined) throw new InvalidStorePathError(p, what, problem);
}

/** A store path that names a derivation file (`….drv`). */
export function drvPathProblem(p: string, storeDir: string = DEFAULT_STORE_DIR): string | undefined {
  return storePathProblem(p, storeDir) ?? (p.endsWith('.drv') ? undefined : 'it does not end in .drv');
}

export function assertDrvPath(p: string, what: string, storeDir: string = DEFAULT_STORE_DIR): void {
  const problem = drvPathProblem(p, storeDir);
  if (problem !== undefined) throw new InvalidStorePathError(p, what, problem);
}

/** The part after `<hash>-`; assumes `p` is a store path. */
export function storePathName(p: string): string {
  const base = p.slice(p.lastIndexOf('/') + 1);
  return base.slice(HASH_LENGTH + 1);
}

/** `/nix/store/<hash>-hello-2.12.1.drv` → `hello-2.12.1`. */
export function drvNameFromPath(drvPath: string): string {
  const name = storePathName(drvPath);
  return name.endsWith('.drv') ? name.slice(0, -'.drv'.length) : name;
}
