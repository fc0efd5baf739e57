import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nixStateDirWritable, opensStoreInProcess, storeFilesReadable } from '../../src/store/storeInProcess.js';

describe('which store local Nix commands open', () => {
  const writable = () => true;
  const readOnly = () => false;

  it('opens `local` in-process, with or without parameters, whoever may write the state directory', () => {
    expect(opensStoreInProcess('local', readOnly)).toBe(true);
    expect(opensStoreInProcess('local?root=/tmp/r', readOnly)).toBe(true);
    expect(opensStoreInProcess(' local ', readOnly)).toBe(true);
  });

  it('opens `auto` in-process only for a user who can read and write the state directory (else the daemon)', () => {
    expect(opensStoreInProcess('auto', writable)).toBe(true);
    expect(opensStoreInProcess('auto', readOnly)).toBe(false);
    expect(opensStoreInProcess('', writable)).toBe(true);
  });

  it('does not know for a daemon, a socket, a remote store or an `auto` with parameters', () => {
    for (const store of ['daemon', 'unix:///nix/var/nix/daemon-socket/socket', 'ssh-ng://ruby', 'file:///tmp/cache', 'auto?root=/x', 'localhost', '/tmp/root']) {
      expect(opensStoreInProcess(store, writable), store).toBe(false);
    }
  });

  it('asks the file system about $NIX_STATE_DIR', () => {
    const dir = mkdtempSync(join(tmpdir(), 'offload-state-dir-'));
    try {
      expect(nixStateDirWritable({ NIX_STATE_DIR: dir })).toBe(true);
      expect(nixStateDirWritable({ NIX_STATE_DIR: join(dir, 'missing') })).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('whether the local store’s files can be read where their store paths say', () => {
  const writable = () => true;
  const readOnly = () => false;
  const env = {};

  it('reads them for a plain `local` store, or `auto` opened in-process, at the default store directory', () => {
    expect(storeFilesReadable('local', '/nix/store', readOnly, env)).toBe(true);
    expect(storeFilesReadable(' local ', '/nix/store', readOnly, env)).toBe(true);
    expect(storeFilesReadable('auto', '/nix/store', writable, env)).toBe(true);
    expect(storeFilesReadable('', '/nix/store', writable, env)).toBe(true);
    expect(storeFilesReadable('local', '/opt/store', readOnly, { NIX_STORE_DIR: '/opt/store' })).toBe(true);
  });

  it('leaves them to nix-store for a chroot or relocated store, a daemon, a remote store, or another store directory', () => {
    for (const store of ['local?root=/tmp/r', 'local?real=/elsewhere', 'local?store=/opt/store', 'auto?root=/x', 'daemon', 'unix:///nix/var/nix/daemon-socket/socket', 'ssh-ng://ruby', '/tmp/root']) {
      expect(storeFilesReadable(store, '/nix/store', writable, env), store).toBe(false);
    }
    // `auto` for a user who cannot write the state directory is the daemon (or a chroot store under ~/.local/share/nix/root).
    expect(storeFilesReadable('auto', '/nix/store', readOnly, env)).toBe(false);
    expect(storeFilesReadable('local', '/nix/store', writable, { NIX_STORE_DIR: '/opt/store' })).toBe(false);
    expect(storeFilesReadable('local', '/opt/store', writable, env)).toBe(false);
  });
});
