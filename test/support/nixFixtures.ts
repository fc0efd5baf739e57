import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Derivation } from '../../src/drv/derivation.js';
import { parseDrv } from '../../src/drv/parseDrv.js';
import { localNixEnv } from '../../scripts/cluster/localNix.js';

const run = promisify(execFile);

/** How tests talk to the Nix on this machine: its store, directly, with the tests' own nix.conf. */
export const nixTestEnv: NodeJS.ProcessEnv = localNixEnv();

export function nixPresent(): boolean {
  return spawnSync('nix-store', ['--version'], { env: nixTestEnv }).status === 0;
}

let reported = false;

/**
 * Whether tests that need a real Nix can run. In CI (`CI` set) a missing
 * Nix throws, so the suite fails instead of passing by skipping; elsewhere
 * the tests are skipped with the reason printed once.
 */
export function requireNix(): boolean {
  if (nixPresent()) return true;
  const message = 'these tests need Nix (nix-store, nix-instantiate on PATH; apt-get install nix-bin)';
  if (process.env.CI) throw new Error(`CI is set but ${message}`);
  if (!reported) {
    reported = true;
    console.warn(`skipping: ${message}`);
  }
  return false;
}

export interface TestDerivation {
  drvPath: string;
  drv: Derivation;
  /** Path of the `out` output. */
  outPath: string;
}

export interface TestDerivationSpec {
  name: string;
  /** Shell script run by /bin/sh; `$out` is the output. PATH is not set: use absolute tool paths. */
  script: string;
  /** Store paths the script uses; they become input sources (must be valid). */
  inputs?: string[];
}

/** A Nix string literal: escapes what Nix would otherwise interpret. */
function nixString(value: string): string {
  return '"' + value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$\{/g, '\\${').replace(/\n/g, '\\n') + '"';
}

/**
 * Writes a derivation with a random nonce (so it has never been built
 * before), instantiates it into the local store and parses the `.drv`.
 */
export async function instantiate(spec: TestDerivationSpec): Promise<TestDerivation> {
  const dir = mkdtempSync(join(tmpdir(), 'offload-drv-'));
  const nonce = randomBytes(8).toString('hex');
  const inputs = (spec.inputs ?? []).map((p) => `(builtins.storePath ${nixString(p)})`).join(' ');
  const file = join(dir, 'default.nix');
  writeFileSync(
    file,
    `derivation {
  name = ${nixString(spec.name)};
  builder = "/bin/sh";
  args = [ "-c" ${nixString(spec.script)} ];
  system = builtins.currentSystem;
  nonce = ${nixString(nonce)};
  inputs = [ ${inputs} ];
}\n`,
  );
  const { stdout } = await run('nix-instantiate', [file], { env: nixTestEnv });
  const drvPath = stdout.trim();
  const drv = parseDrv(readFileSync(drvPath, 'utf8'), drvPath);
  const outPath = drv.outputs.out?.path;
  if (!outPath) throw new Error(`${drvPath} has no out output`);
  return { drvPath, drv, outPath };
}

/** Runs a nix-store command against the test store; resolves with its stdout. */
export async function nixStore(args: string[]): Promise<string> {
  const { stdout } = await run('nix-store', args, { env: nixTestEnv, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' });
  return stdout;
}
