import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
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
      const db = openCacheDatabase(path, 'a test file', (message) => new OffloadError(message, ExitCode.badInput), () => undefined);
      db.close();
    } finally {
      process.umask(old);
    }
    expect(statSync(join(dir, 'cache', 'offload')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'cache')).mode & 0o777).toBe(0o700);
    expect(statSync(dir).mode & 0o777).toBe(0o700); // mkdtemp's own, untouched
  });
});
