import { userInfo } from 'node:os';
import type { Machine } from '../config/machine.js';
import { readDaemonNixConfig } from '../config/nixSettings/daemonSettings.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { ServeClient } from '../remote/serveClient.js';
import { probeSigningKeys, type BuilderSigning } from '../remote/signingKeys.js';
import type { SshPool } from '../remote/sshPool.js';
import { probeUnsignedImports, type UnsignedImports } from '../remote/unsignedImportProbe.js';
import { LOCAL_HOST } from '../schedule/types.js';
import { spawnServe } from '../store/spawnServe.js';
import { copyBackVerdict } from './copyBackTrust.js';

export interface CopyBackCheckOptions {
  ssh: SshPool;
  machines: readonly Machine[];
  /** Every host the run may use (planned and reserves); the local one is skipped. */
  hosts: readonly string[];
  storeDir?: string;
  /** The local store is opened in-process (store/storeInProcess.ts): it takes unsigned paths, so it is not asked. */
  storeInProcess?: boolean;
  log: (line: string) => void;
  /** An open local `nix-store --serve --write` to ask on (the caller's, left open) instead of starting one. */
  localServe?: ServeClient;
}

export interface LocalStoreAccess {
  /**
   * The local store takes unsigned paths from this user only with a
   * signature, so it is a nix-daemon that does not trust the user: it also
   * refuses build-derivation of input-addressed derivations, and local
   * builds go through build-paths from the store's own `.drv` files.
   */
  untrusted: boolean;
  /**
   * Builders with a post-build-hook, which may sign what they build after
   * Nix registered it (only learned when the local store wants signatures:
   * only then do they matter). See ExecutorOptions.signsAfterBuild.
   */
  signsAfterBuild: string[];
}

/**
 * Before anything is built: asks the local store whether it takes unsigned
 * paths from this user; if not, learns each builder's signing keys and
 * refuses the run (exit 1, both fixes named) when a builder's outputs could
 * not be copied back. Builders whose keys cannot be learned are let through
 * with a note: a refusal then fails their job at once (failure.ts).
 */
export async function checkCopyBack(options: CopyBackCheckOptions): Promise<LocalStoreAccess> {
  if (options.storeInProcess) return { untrusted: false, signsAfterBuild: [] };
  const local = await askLocalStore(options.storeDir, options.log, options.localServe);
  if (local === undefined || local.accepted) return { untrusted: false, signsAfterBuild: [] };
  const remote = options.hosts.filter((host) => host !== LOCAL_HOST);
  const byName = new Map(options.machines.map((m) => [m.hostName, m]));
  const builders = await Promise.all(
    remote.map(async (host) => ({ host, signing: await signingOf(options.ssh, byName.get(host)) })),
  );
  const config = await readDaemonNixConfig();
  const verdict = copyBackVerdict({
    user: currentUser(),
    local,
    builders,
    trustedPublicKeys: config.settings.trustedPublicKeys.value,
    confFile: config.locations.systemFile,
  });
  if (!verdict.ok) throw new OffloadError(verdict.message, ExitCode.failed);
  for (const note of verdict.notes) options.log(`offload: ${note}`);
  if (verdict.signing.length > 0) {
    options.log(`offload: the local store takes only signed paths from ${currentUser()}; ${verdict.signing.join(', ')} sign${verdict.signing.length === 1 ? 's' : ''} with a key it trusts`);
  }
  return { untrusted: true, signsAfterBuild: builders.filter((b) => b.signing.ok && b.signing.postBuildHook !== undefined).map((b) => b.host) };
}

/**
 * Whether the local store takes unsigned paths from this user; undefined
 * (after a warning) when it could not be asked. On `given`, when there is
 * one (left open: a store that refused the probe has closed it itself).
 */
export async function askLocalStore(storeDir: string | undefined, log: (line: string) => void, given?: ServeClient): Promise<UnsignedImports | undefined> {
  let client: ServeClient | undefined;
  try {
    client = given?.usable ? given : await ServeClient.open(await spawnServe(), storeDir ? { storeDir } : {});
    return await probeUnsignedImports(client, storeDir);
  } catch (error) {
    if (!(error instanceof OffloadError)) throw error;
    log(`offload: warning: could not ask the local store whether it takes unsigned paths (${error.message})`);
    return undefined;
  } finally {
    if (client !== given) client?.close();
  }
}

async function signingOf(ssh: SshPool, machine: Machine | undefined): Promise<BuilderSigning> {
  if (!machine) return { ok: false, reason: 'no such machine is configured' };
  try {
    return await probeSigningKeys(ssh, machine);
  } catch (error) {
    if (!(error instanceof OffloadError)) throw error;
    return { ok: false, reason: error.message };
  }
}

export function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}
