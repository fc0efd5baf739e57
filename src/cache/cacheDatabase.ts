import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { OffloadError } from '../errors/offloadError.js';

/**
 * offload's per-user state (build history, slot leases) lives in SQLite files
 * under `${XDG_CACHE_HOME:-~/.cache}/offload`, shared by every offload
 * process of the user: WAL so readers never wait for a writer, a busy timeout
 * so short write transactions queue instead of failing.
 */
const BUSY_TIMEOUT_MS = 10_000;

export function cacheFilePath(file: string, env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  const cache = xdg !== undefined && isAbsolute(xdg) ? xdg : join(env.HOME ?? homedir(), '.cache');
  return join(cache, 'offload', file);
}

/** What a cache database's file must hold: `user_version` says which, `migrate` gets any other file there (or refuses it). */
export interface CacheSchema {
  version: number;
  migrate: (db: Database.Database) => void;
}

/**
 * Opens (creating folders as needed) and migrates a cache database. `what`
 * names it in errors; `fail` makes the module's own error type.
 *
 * A file already at `schema.version` (every open but the first) is only
 * read: no write lock, and no write for the last connection's close to
 * checkpoint back into the file and sync. Stamping the version again at
 * every open cost ~15-30 ms per file at the start of each run and ~10 ms
 * more at its close (measured, loaded machine), and waited for any other
 * process's write transaction.
 */
export function openCacheDatabase(path: string, what: string, fail: (message: string, cause: unknown) => OffloadError, schema: CacheSchema): Database.Database {
  let db: Database.Database;
  try {
    if (path !== ':memory:') makePrivateDirectory(dirname(path));
    db = new Database(path);
  } catch (error) {
    throw fail(`cannot open ${what} at ${path}: ${(error as Error).message}`, error);
  }
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('journal_mode = WAL');
    // Never an fsync. In WAL mode NORMAL synced only at checkpoints, and the
    // checkpoint of the last connection's close made every run's exit wait for
    // two fsyncs per file (300-path run at load 6: exit 61 -> 44 ms, median of
    // 6). What that gives up: nothing when offload crashes or is killed (the
    // kernel has the writes); on an OS crash or power loss within the kernel's
    // writeback delay after a run, that run's rows, and the file can be left
    // damaged. Both files hold only what offload learns again: history is
    // advice, and a lease means nothing after a reboot (its boot id is gone).
    db.pragma('synchronous = OFF');
    if (db.pragma('user_version', { simple: true }) !== schema.version) schema.migrate(db);
  } catch (error) {
    db.close();
    if (error instanceof OffloadError) throw error;
    throw fail(`cannot use ${what} at ${path}: ${(error as Error).message}${damaged(error) ? '; it holds only what offload learns again, so delete it' : ''}`, error);
  }
  return db;
}

/** SQLite found the file damaged, or not a database (a damaged first page). */
function damaged(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB';
}

/**
 * The cache says which hosts a user builds on and what; others have no
 * business reading it. Missing folders are created 0700 (the parents too, as
 * XDG_CACHE_HOME should be); an existing folder is left as its owner set it.
 */
function makePrivateDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}
