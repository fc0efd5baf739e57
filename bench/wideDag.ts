/** The wide benchmark DAG (bench/wideDag.nix), instantiated fresh for every run. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { localNixEnv } from '../scripts/cluster/localNix.js';

const run = promisify(execFile);
export const ROOT = new URL('..', import.meta.url).pathname;
export const nixEnv: NodeJS.ProcessEnv = localNixEnv();

/** `leaves` leaves sleeping `sleep` seconds and a top reading them; `nonce` makes every path new. */
export async function instantiateWideDag(nonce: string, leaves: number, sleep: number): Promise<string> {
  const { stdout } = await run('nix-instantiate', [join(ROOT, 'bench/wideDag.nix'), '--argstr', 'nonce', nonce, '--arg', 'n', String(leaves), '--argstr', 'sleep', String(sleep)], { env: nixEnv });
  return stdout.trim();
}

/** A chain of `links` links sleeping `sleep` seconds each (bench/chainDag.nix). */
export async function instantiateChainDag(nonce: string, links: number, sleep: number): Promise<string> {
  const { stdout } = await run('nix-instantiate', [join(ROOT, 'bench/chainDag.nix'), '--argstr', 'nonce', nonce, '--arg', 'n', String(links), '--argstr', 'sleep', String(sleep)], { env: nixEnv });
  return stdout.trim();
}

export function freshNonce(): string {
  return `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
}
