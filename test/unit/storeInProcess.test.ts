import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nixStateDirWritable, opensStoreInProcess } from '../../src/store/storeInProcess.js';

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
