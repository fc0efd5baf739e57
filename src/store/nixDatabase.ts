import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PathInfo } from '../remote/serveClient.js';
import { formatNixBase32, parseNixHash } from '../storePath/nixHash.js';
import { DEFAULT_STORE_DIR, isStorePath } from '../storePath/storePath.js';
import { nixStateDirWritable, storeFilesReadable } from './storeInProcess.js';

/**
 * Nix's own database of the local store (`$NIX_STATE_DIR/db`, default
 * /nix/var/nix/db), read in this process, as Nix's build-remote reads
 * it in its own: which paths are valid, their infos, their closures. A
 * `nix-store --serve` started only to answer those costs a process start
 * and a store open (~150 ms of CPU on the cores the build shares).
 *
 * Read-only and only where it is Nix's own store opened in-process
 * (`openLocalNixDatabase`). Every answer is the one `nix-store --serve`
 * gives for the same question (Nix 2.8 nix-store.cc opServe over
 * local-store.cc queryPathInfoUncached): paths sorted as Nix's StorePathSet,
 * NAR hashes in base32, signatures as a sorted set, content addresses as
 * Nix renders them. What cannot be answered that way (a schema it does not
 * know, a row Nix itself would refuse, SQLite busy past a short wait) is
 * `undefined`, and the question goes to `nix-store --serve` as before.
 */
export class NixDatabase {
  private readonly infoOf: Database.Statement<[string], InfoRow>;
  private readonly referencesOf: Database.Statement<[number], string>;
  /**
   * What was read of valid paths, kept for the process as Nix keeps it in
   * its own (Store::pathInfoCache): a run asks about the same paths more
   * than once (validity, then the first uploads' closure and infos), and a
   * valid path's row never changes. Invalid answers are not kept: a path
   * may become valid (a copy back) at any time.
   */
  private readonly known = new Map<string, Known>();
  private failed = false;

  private constructor(
    private readonly db: Database.Database,
    private readonly storeDir: string,
    private readonly debug: (message: string) => void,
  ) {
    // Nix's own statements (local-store.cc QueryPathInfo, QueryReferences).
    this.infoOf = db.prepare('select id, hash, registrationTime, deriver, narSize, ultimate, sigs, ca from ValidPaths where path = ?');
    this.referencesOf = db.prepare<[number], string>('select path from Refs join ValidPaths on reference = id where referrer = ?').pluck();
  }

  /**
   * The database in `dbDir`, opened read-only, or undefined (after a debug
   * line saying why) when it is missing, unreadable, of a schema version
   * other than Nix's 10, or lacks a column the queries read.
   */
  static open(dbDir: string, options: { storeDir?: string; busyTimeoutMs?: number; debug?: (message: string) => void } = {}): NixDatabase | undefined {
    const debug = options.debug ?? (() => undefined);
    let db: Database.Database | undefined;
    try {
      const problem = schemaVersionProblem(readFileSync(join(dbDir, 'schema'), 'latin1'));
      if (problem !== undefined) {
        debug(`local store: not reading Nix's database in ${dbDir}: ${problem}`);
        return undefined;
      }
      db = new Database(join(dbDir, 'db.sqlite'), { readonly: true, fileMustExist: true, timeout: options.busyTimeoutMs ?? BUSY_TIMEOUT_MS });
      const columns = Object.fromEntries(Object.keys(NEEDED_COLUMNS).map((table) => [table, (db!.pragma(`table_info(${table})`) as Array<{ name: string }>).map((c) => c.name)]));
      const missing = missingColumns(columns);
      if (missing !== undefined) {
        db.close();
        debug(`local store: not reading Nix's database in ${dbDir}: ${missing}`);
        return undefined;
      }
      return new NixDatabase(db, options.storeDir ?? DEFAULT_STORE_DIR, debug);
    } catch (error) {
      db?.close();
      debug(`local store: not reading Nix's database in ${dbDir}: ${describe(error)}`);
      return undefined;
    }
  }

  /** The valid ones among `paths`, sorted and each once, as nix-store --serve's query-valid-paths replies; undefined when the database cannot say. */
  validPaths(paths: readonly string[]): string[] | undefined {
    return this.read('validity', () => sortedSet(paths).filter((path) => this.entry(path) !== undefined));
  }

  /** Infos of the valid ones among `paths`, in Nix's order (sorted, each once); undefined when the database cannot say. */
  pathInfos(paths: readonly string[]): PathInfo[] | undefined {
    return this.read('path infos', () => {
      const infos: PathInfo[] = [];
      for (const path of sortedSet(paths)) {
        const known = this.entry(path);
        if (known === undefined) continue;
        known.info ??= pathInfoFromRow(path, known.row, this.references(known), this.storeDir);
        infos.push(known.info);
      }
      return infos;
    });
  }

  /**
   * The closure of `paths` under references, sorted (Nix's computeFSClosure
   * without outputs); undefined when one of them is not valid (Nix fails
   * that question: nix-store --serve gives its error) or the database cannot say.
   */
  closure(paths: readonly string[]): string[] | undefined {
    return this.read('a closure', () => {
      const seen = new Set<string>();
      const stack = [...paths];
      for (let path = stack.pop(); path !== undefined; path = stack.pop()) {
        if (seen.has(path)) continue;
        const known = this.entry(path);
        if (known === undefined) return undefined;
        seen.add(path);
        for (const reference of this.references(known)) if (!seen.has(reference)) stack.push(reference);
      }
      return sortedSet(seen);
    });
  }

  private entry(path: string): Known | undefined {
    let known = this.known.get(path);
    if (known === undefined) {
      const row = this.infoOf.get(path);
      if (row === undefined) return undefined;
      known = { path, row };
      this.known.set(path, known);
    }
    return known;
  }

  private references(known: Known): readonly string[] {
    if (known.references === undefined) {
      const references = this.referencesOf.all(known.row.id);
      for (const reference of references) if (!isStorePath(reference, this.storeDir)) throw new DatabaseMismatch(`${known.path} has the reference ${JSON.stringify(reference)}`);
      known.references = references;
    }
    return known.references;
  }

  close(): void {
    this.db.close();
  }

  /**
   * One snapshot per question (a deferred read transaction): a closure is
   * read whole from one state of the store, and the statements share one
   * look at the write-ahead log instead of one each (~0.4 ms each on a
   * busy machine). After a failure the database is not asked again.
   */
  private read<T>(what: string, body: () => T | undefined): T | undefined {
    if (this.failed) return undefined;
    try {
      return this.db.transaction(body)();
    } catch (error) {
      this.failed = true;
      this.debug(`local store: Nix's database could not answer ${what} (${describe(error)}); asking nix-store --serve from now on`);
      return undefined;
    }
  }
}

/** Waits this long for a writer that holds the database (only a store not in WAL mode makes readers wait). */
const BUSY_TIMEOUT_MS = 100;

/** The only schema version whose tables these queries know (Nix 2.0 onwards, and Lix). */
export const NIX_SCHEMA_VERSION = 10;

const NEEDED_COLUMNS: Record<string, readonly string[]> = {
  ValidPaths: ['id', 'path', 'hash', 'registrationTime', 'deriver', 'narSize', 'ultimate', 'sigs', 'ca'],
  Refs: ['referrer', 'reference'],
};

/** A valid path as read: its row, then its references and its info once asked for. */
interface Known {
  path: string;
  row: InfoRow;
  references?: readonly string[];
  info?: PathInfo;
}

export interface InfoRow {
  id: number;
  hash: string;
  registrationTime: number;
  deriver: string | null;
  narSize: number | null;
  ultimate: number | null;
  sigs: string | null;
  ca: string | null;
}

/** A row Nix itself would not turn into a path info (its queryPathInfo throws): the question is Nix's to answer. */
export class DatabaseMismatch extends Error {}

/** Why the `schema` file's text is not a version these queries know, or undefined. Nix reads it as a decimal number. */
export function schemaVersionProblem(text: string): string | undefined {
  const version = /^\s*(\d+)\s*$/.exec(text)?.[1];
  if (version === undefined) return `its schema file holds ${JSON.stringify(text.slice(0, 20))}, not a version number`;
  return Number(version) === NIX_SCHEMA_VERSION ? undefined : `its schema version is ${version}, not ${NIX_SCHEMA_VERSION}`;
}

/** The tables' columns the queries read that `columns` (table → column names) lacks, said in words; undefined when none. */
export function missingColumns(columns: Readonly<Record<string, readonly string[]>>): string | undefined {
  const missing = Object.entries(NEEDED_COLUMNS).flatMap(([table, needed]) => needed.filter((c) => !(columns[table] ?? []).includes(c)).map((c) => `${table}.${c}`));
  return missing.length === 0 ? undefined : `it has no column ${missing.join(', ')}`;
}

/**
 * The path info nix-store --serve sends for this row (query-path-infos,
 * protocol minor ≥ 4): the NAR hash in base32 whatever base the row holds,
 * NULL narSize as 0, signatures split on spaces as a sorted set, the
 * content address parsed and rendered again, references sorted. A row Nix
 * would refuse (a hash or content address it cannot parse, a deriver that
 * is no store path) is a DatabaseMismatch.
 */
export function pathInfoFromRow(path: string, row: InfoRow, references: readonly string[], storeDir: string = DEFAULT_STORE_DIR): PathInfo {
  const narHash = parseNixHash(row.hash);
  if (narHash === undefined) throw new DatabaseMismatch(`${path} has the NAR hash ${JSON.stringify(row.hash)}`);
  if (row.deriver !== null && !isStorePath(row.deriver, storeDir)) throw new DatabaseMismatch(`${path} has the deriver ${JSON.stringify(row.deriver)}`);
  for (const reference of references) if (!isStorePath(reference, storeDir)) throw new DatabaseMismatch(`${path} has the reference ${JSON.stringify(reference)}`);
  const ca = row.ca === null ? '' : renderContentAddress(path, row.ca);
  const narSize = row.narSize ?? 0;
  return {
    path,
    ...(row.deriver !== null ? { deriver: row.deriver } : {}),
    references: sortedSet(references),
    downloadSize: narSize,
    narSize,
    narHash: formatNixBase32(narHash),
    ...(ca !== '' ? { ca } : {}),
    sigs: row.sigs === null ? [] : byteSortedSet(row.sigs.split(' ').filter((s) => s !== '')),
  };
}

/**
 * Nix's renderContentAddress(parseContentAddressOpt(text)): `text:sha256:…`
 * or `fixed:[r:]algo:…` with the hash in base32; empty stays empty.
 */
export function renderContentAddress(path: string, text: string): string {
  if (text === '') return '';
  // After the type, the hash in base16, base32 or base64 (Hash::parseNonSRIUnprefixed); text is flat and sha256 only.
  const match = /^(text|fixed):(r:)?([a-z0-9]+):([A-Za-z0-9+/=]+)$/.exec(text);
  const kind = match?.[1];
  const hash = match && parseNixHash(`${match[3]}:${match[4]}`);
  if (!match || !hash || (kind === 'text' && (match[2] !== undefined || hash.algo !== 'sha256'))) {
    throw new DatabaseMismatch(`${path} has the content address ${JSON.stringify(text)}`);
  }
  return `${kind}:${match[2] ?? ''}${formatNixBase32(hash)}`;
}

/**
 * Nix's database for the local store where local Nix commands open that
 * store in this user's process and at the default place
 * (store/storeInProcess.ts storeFilesReadable: `local`, or `auto` with a
 * writable state directory, no parameters, Nix's store directory), opened
 * once per process; undefined elsewhere (a daemon, a chroot store) or when
 * it cannot be read (see NixDatabase.open).
 */
export function openLocalNixDatabase(options: { store: string | undefined; storeDir?: string; env?: NodeJS.ProcessEnv; debug?: (message: string) => void }): NixDatabase | undefined {
  const env = options.env ?? process.env;
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  if (options.store === undefined || !storeFilesReadable(options.store, storeDir, () => nixStateDirWritable(env), env)) return undefined;
  // Nix 2.x: the state directory's db (NIX_DB_DIR is no longer read).
  const dbDir = join(env.NIX_STATE_DIR || '/nix/var/nix', 'db');
  const key = `${dbDir}\0${storeDir}`;
  if (!opened.has(key)) opened.set(key, NixDatabase.open(dbDir, { storeDir, ...(options.debug ? { debug: options.debug } : {}) }));
  return opened.get(key);
}

const opened = new Map<string, NixDatabase | undefined>();

function sortedSet(paths: Iterable<string>): string[] {
  // Store paths are ASCII: code-unit order is Nix's byte order.
  return [...new Set(paths)].sort();
}

function byteSortedSet(items: readonly string[]): string[] {
  return [...new Set(items)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

function describe(error: unknown): string {
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ? `${(error as NodeJS.ErrnoException).code}: ${error.message}` : error.message;
  return String(error);
}
