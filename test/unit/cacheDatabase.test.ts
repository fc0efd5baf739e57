import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openCacheDatabase } from '../../src/cache/cacheDatabase.js';
import { ExitCode, OffloadError } from '../../src/errors/offloadError.js';

let dir: string | undefined;
afterEach(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('openCacheDatabase', () => {
  it('creates the cache folders 0700 whatever the umask, and leaves existing folders alone', () => {
    dir = mkdtempSync(join(tmpdir(), 'offload-cache-'));
    const path = join(dir, 'cache', 'offload', 'history.sqlite');
    const old = process.umask(0o022);
    try {
      const db = openCacheDatabase(path, 'a test file', (message) => new OffloadError(message, ExitCode.badInput), { version: 1, migrate: () => undefined });
      db.close();
    } finally {
      process.umask(old);
    }
    expect(statSync(join(dir, 'cache', 'offload')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'cache')).mode & 0o777).toBe(0o700);
    expect(statSync(dir).mode & 0o777).toBe(0o700); // mkdtemp's own, untouched
  });

  it('migrates a file at another version, and only reads one at its own: no write lock, nothing written', () => {
    dir = mkdtempSync(join(tmpdir(), 'offload-cache-'));
    const path = join(dir, 'offload', 'test.sqlite');
    const fail = (message: string) => new OffloadError(message, ExitCode.badInput);
    const migrate = vi.fn((db: Database.Database) => {
      db.exec('CREATE TABLE IF NOT EXISTS t (x)');
      db.pragma('user_version = 3');
    });
    openCacheDatabase(path, 'a test file', fail, { version: 3, migrate }).close();
    expect(migrate).toHaveBeenCalledTimes(1);

    // Another process in the middle of a write transaction: an open that wrote anything would wait for it.
    const writer = new Database(path);
    writer.exec('BEGIN IMMEDIATE; INSERT INTO t VALUES (1)');
    try {
      const db = openCacheDatabase(path, 'a test file', fail, { version: 3, migrate });
      expect(migrate).toHaveBeenCalledTimes(1);
      expect(db.pragma('user_version', { simple: true })).toBe(3);
      db.close();
    } finally {
      writer.exec('ROLLBACK');
      writer.close();
    }
    openCacheDatabase(path, 'a test file', fail, { version: 4, migrate }).close();
    expect(migrate).toHaveBeenCalledTimes(2);
  });

  it('never waits for an fsync (its rows are what offload learns again), and says a damaged file can go', () => {
    dir = mkdtempSync(join(tmpdir(), 'offload-cache-'));
    const fail = (message: string) => new OffloadError(message, ExitCode.badInput);
    const db = openCacheDatabase(join(dir, 'ok.sqlite'), 'a test file', fail, { version: 0, migrate: () => undefined });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(0);
    db.close();
    mkdirSync(join(dir, 'offload'));
    const path = join(dir, 'offload', 'damaged.sqlite');
    writeFileSync(path, 'not a database, but as long as a SQLite header: 0123456789abcdefghijklmnopqrstuvwxyz'.repeat(64));
    expect(() => openCacheDatabase(path, 'a test file', fail, { version: 1, migrate: () => undefined })).toThrow(
      `cannot use a test file at ${path}: file is not a database; it holds only what offload learns again, so delete it`,
    );
  });
});
