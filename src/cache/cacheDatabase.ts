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

/**
 * Opens (creating folders as needed) and migrates a cache database. `what`
 * names it in errors; `fail` makes the module's own error type.
 */
export function openCacheDatabase(
  path: string,
  what: string,
  fail: (message: string, cause: unknown) => OffloadError,
  migrate: (db: Database.Database) => void,
): Database.Database {
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
    // Losing the last commit on power loss is harmless for both: history is advice, leases die with their owners.
    db.pragma('synchronous = NORMAL');
    migrate(db);
  } catch (error) {
    db.close();
    if (error instanceof OffloadError) throw error;
    throw fail(`cannot use ${what} at ${path}: ${(error as Error).message}`, error);
  }
  return db;
}

/**
 * The cache says which hosts a user builds on and what; others have no
 * business reading it. Missing folders are created 0700 (the parents too, as
 * XDG_CACHE_HOME should be); an existing folder is left as its owner set it.
 */
function makePrivateDirectory(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}
