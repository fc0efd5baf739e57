import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KeyFileError } from '../../src/config/errors.js';
import { checkKeyFile } from '../../src/config/keyFile.js';
import { ExitCode } from '../../src/errors/offloadError.js';

const dir = mkdtempSync(join(tmpdir(), 'offload-keyfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keyWithMode(name: string, mode: number): string {
  const path = join(dir, name);
  writeFileSync(path, 'not a real key\n');
  chmodSync(path, mode);
  return path;
}

describe('checkKeyFile', () => {
  it('accepts a key only its owner can read (600 and 400)', () => {
    expect(() => checkKeyFile(keyWithMode('id_600', 0o600), 'ruby')).not.toThrow();
    expect(() => checkKeyFile(keyWithMode('id_400', 0o400), 'ruby')).not.toThrow();
  });

  it.each([
    [0o644, '0644'],
    [0o640, '0640'],
    [0o604, '0604'],
    [0o601, '0601'],
  ])('refuses a key with mode %o as ssh does', (mode, octal) => {
    const path = keyWithMode(`id_${octal}`, mode);
    let error: unknown;
    try {
      checkKeyFile(path, 'kana');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KeyFileError);
    expect((error as KeyFileError).exitCode).toBe(ExitCode.badInput);
    expect((error as KeyFileError).message).toBe(
      `SSH key ${path} for host kana is accessible by group or others (mode ${octal}); ssh refuses such keys: run chmod 600 ${path}`,
    );
  });

  it('names the file and host of a missing key', () => {
    const path = join(dir, 'absent');
    expect(() => checkKeyFile(path, 'aquamarine')).toThrow(
      new KeyFileError(`SSH key ${path} for host aquamarine does not exist`),
    );
  });

  it('refuses a directory', () => {
    const path = join(dir, 'a-directory');
    mkdirSync(path);
    expect(() => checkKeyFile(path, 'ruby')).toThrow(`SSH key ${path} for host ruby is not a regular file`);
  });

  it('reports a key it cannot stat', () => {
    const path = join(keyWithMode('plain-file', 0o600), 'below-a-file');
    expect(() => checkKeyFile(path, 'ruby')).toThrow(`SSH key ${path} for host ruby cannot be read (ENOTDIR)`);
  });
});
