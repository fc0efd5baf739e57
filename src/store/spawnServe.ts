import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { ServeTransport } from '../remote/transport.js';

/** `nix-store` could not be started: Nix is not installed (or not where we were told). */
export class NixStoreNotFoundError extends OffloadError {
  constructor(readonly bin: string, options?: { cause?: unknown }) {
    super(`Could not run ${bin}: is Nix installed and on PATH?`, ExitCode.badInput, options);
  }
}

/**
 * Whether spawnServe could start `bin` with `env`: a file this user may run,
 * found as execvp finds it (a name with a slash as it is, else along the
 * environment's PATH, else along the system's default). Where the local
 * store is answered without starting one, this is what still tells that Nix
 * is not installed.
 */
export function nixStoreRunnable(bin = 'nix-store', env: NodeJS.ProcessEnv = process.env): boolean {
  const candidates = bin.includes('/') ? [bin] : (env.PATH ?? '/bin:/usr/bin').split(delimiter).map((dir) => join(dir === '' ? '.' : dir, bin));
  return candidates.some((file) => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  });
}

export interface SpawnServeOptions {
  /** The nix-store binary (default `nix-store` from PATH). */
  nixStoreBin?: string;
  /** Environment of the child; default: ours, so NIX_REMOTE, NIX_CONFIG and friends pass through. */
  env?: NodeJS.ProcessEnv;
  /** Seconds between asking the server to stop and killing it (default 5). */
  killAfterSeconds?: number;
  /** Extra arguments before `--serve`, e.g. `--option substituters …` for the process that fetches. */
  args?: readonly string[];
}

export interface ChildServeTransport extends ServeTransport {
  readonly child: ChildProcessWithoutNullStreams;
  /** Resolves with the exit code (or the signal name) once the child is gone. */
  readonly exited: Promise<number | string>;
}

/**
 * Starts `nix-store --serve --write` against the local store as a
 * ServeTransport. Resolves once the process runs, so a missing Nix is a
 * NixStoreNotFoundError here rather than a silent end of stream later.
 */
export async function spawnServe(options: SpawnServeOptions = {}): Promise<ChildServeTransport> {
  const bin = options.nixStoreBin ?? 'nix-store';
  const child = spawn(bin, [...(options.args ?? []), '--serve', '--write'], { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT' || error.code === 'EACCES' ? new NixStoreNotFoundError(bin, { cause: error }) : error);
    });
  });
  child.on('error', () => undefined);
  const graceMs = (options.killAfterSeconds ?? 5) * 1000;
  let closing = false;
  return {
    child,
    exited,
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    host: 'local',
    close() {
      if (closing) return;
      closing = true;
      // End of input makes Nix stop its build and exit cleanly; SIGTERM does the same when it is busy elsewhere.
      // Dropping our end of stdout turns a write blocked on a full pipe (an abandoned export) into EPIPE.
      child.stdin.end();
      child.stdout.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      killer.unref();
      void exited.then(() => clearTimeout(killer));
    },
    detach() {
      // Told to stop and with nothing in progress, it ends on its own: Node need not stay for its exit or its last words.
      child.unref();
      child.stderr.destroy();
    },
  };
}
