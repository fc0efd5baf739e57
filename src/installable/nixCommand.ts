import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * Nix refused: its own message is already on the terminal (Nix writes its
 * stderr straight there), so this adds one line saying what offload asked,
 * and offload exits with Nix's exit code.
 */
export class NixCommandFailedError extends OffloadError {
  constructor(
    readonly what: string,
    readonly command: string,
    readonly nixExitCode: number,
  ) {
    super(`${what} failed (${command} exited with ${nixExitCode}; its message is above); nothing was built.`, nixExitCode);
  }
}

/** The Nix tool offload needs to evaluate is not installed. */
export class NixToolNotFoundError extends OffloadError {
  constructor(readonly command: string, what: string, options?: { cause?: unknown }) {
    super(`${what} needs ${command}, which was not found on PATH: is Nix installed?`, ExitCode.badInput, options);
  }
}

export interface NixCommandOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** What this call does, for messages: `evaluating ./default.nix -A hello`. */
  what: string;
}

/**
 * Runs a Nix command and returns its stdout. Its stderr goes straight to
 * ours, so evaluation errors, warnings and fetch progress reach the user as
 * Nix wrote them (colours included on a terminal).
 */
export function runNixCommand(command: string, args: readonly string[], options: NixCommandOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.once('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT' || error.code === 'EACCES' ? new NixToolNotFoundError(command, options.what, { cause: error }) : error);
    });
    child.once('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(chunks).toString('utf8'));
      else if (signal === 'SIGINT' || signal === 'SIGTERM') reject(new OffloadError(`${options.what} was interrupted.`, ExitCode.interrupted));
      else reject(new NixCommandFailedError(options.what, command, code ?? 128 + (signal ? constants.signals[signal] : 0)));
    });
  });
}
