import { describe, expect, it } from 'vitest';
import {
  assertDrvPath,
  assertStorePath,
  drvNameFromPath,
  InvalidStorePathError,
  isStorePath,
  storePathName,
} from '../../src/storePath/storePath.js';
import { OffloadError } from '../../src/errors/offloadError.js';

const HASH = 'l9r346p3d25vs4g5v37f3r3f28js97kb';

describe('isStorePath', () => {
  it('accepts real store paths', () => {
    expect(isStorePath(`/nix/store/${HASH}-hello-2.12.1`)).toBe(true);
    expect(isStorePath(`/nix/store/${HASH}-bootstrap-stage1-gcc-wrapper-`)).toBe(true);
    expect(isStorePath(`/nix/store/${HASH}-a+b_c.d?e=f`)).toBe(true);
    expect(isStorePath(`/nix/store/${HASH}-${'x'.repeat(211)}`)).toBe(true);
  });

  it('rejects hashes outside the Nix base32 alphabet (e, o, t, u) or of the wrong length', () => {
    for (const bad of ['e', 'o', 't', 'u', 'A', '/']) {
      expect(isStorePath(`/nix/store/${bad}${HASH.slice(1)}-x`)).toBe(false);
    }
    expect(isStorePath(`/nix/store/${HASH.slice(1)}-x`)).toBe(false);
    expect(isStorePath(`/nix/store/${HASH}x-x`)).toBe(false);
  });

  it('rejects names that could be interpreted by a shell or escape the store', () => {
    for (const name of ['a b', 'a;b', '$(id)', '`id`', 'a/b', '../etc', '.hidden', '', 'a\nb', 'ü', 'a*', "a'b"]) {
      expect(isStorePath(`/nix/store/${HASH}-${name}`), name).toBe(false);
    }
    expect(isStorePath(`/nix/store/${HASH}-${'x'.repeat(212)}`)).toBe(false);
  });

  it('requires the configured store directory', () => {
    expect(isStorePath(`/nix/store/${HASH}-x`, '/other/store')).toBe(false);
    expect(isStorePath(`/other/store/${HASH}-x`, '/other/store')).toBe(true);
    expect(isStorePath(`/other/store/${HASH}-x`, '/other/store/')).toBe(true);
    expect(isStorePath(`/nix/storex/${HASH}-x`)).toBe(false);
    expect(isStorePath(`nix/store/${HASH}-x`)).toBe(false);
  });
});

describe('assertStorePath', () => {
  it('throws an OffloadError that names the path, its source and the problem', () => {
    let error: unknown;
    try {
      assertStorePath(`/nix/store/${HASH}-x;rm -rf ~`, 'input source of /nix/store/abc.drv');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidStorePathError);
    expect(error).toBeInstanceOf(OffloadError);
    const message = (error as Error).message;
    expect(message).toContain('input source of /nix/store/abc.drv');
    expect(message).toContain(`${HASH}-x;rm -rf ~`);
    expect(message).toContain('invalid character ";"');
  });

  it('passes valid paths', () => {
    expect(() => assertStorePath(`/nix/store/${HASH}-x`, 'test')).not.toThrow();
  });

  it('assertDrvPath also requires the .drv suffix', () => {
    expect(() => assertDrvPath(`/nix/store/${HASH}-x.drv`, 'root')).not.toThrow();
    expect(() => assertDrvPath(`/nix/store/${HASH}-x`, 'root')).toThrow(/does not end in \.drv/);
  });
});

describe('names', () => {
  it('storePathName is the part after the hash', () => {
    expect(storePathName(`/nix/store/${HASH}-hello-2.12.1`)).toBe('hello-2.12.1');
  });

  it('drvNameFromPath drops the .drv suffix', () => {
    expect(drvNameFromPath(`/nix/store/${HASH}-hello-2.12.1.drv`)).toBe('hello-2.12.1');
    expect(drvNameFromPath(`/nix/store/${HASH}-source.tar.gz.drv`)).toBe('source.tar.gz');
  });
});
