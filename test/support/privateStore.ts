import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNamespaceHolder } from '../../scripts/cluster/builderNamespace.js';
import { emptyNamespace } from '../../scripts/cluster/namespaceProcesses.js';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A local Nix store of the test's own: a mount namespace (like a test
 * builder's) with a fresh folder on /nix and /etc/nix. Commands run there
 * with `nsenter`, so `nix-store --gc` and friends never touch the machine's
 * store. The namespace and its folder go away with dispose().
 */
export interface PrivateStore {
  /** The folder mounted on /nix. */
  nixDir: string;
  /** The process holding the mount namespace: `nsenter -t <pid> -m` runs a command there. */
  holderPid: number;
  run(command: string[], options?: { env?: NodeJS.ProcessEnv; cwd?: string }): Promise<CommandResult>;
  /** Starts a long-running command there (e.g. nix-daemon); dispose() ends it with everything else. */
  start(command: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  dispose(): Promise<void>;
}

export async function startPrivateStore(label: string): Promise<PrivateStore> {
  const root = mkdtempSync(join(tmpdir(), `offload-${label}-`));
  const nixDir = join(root, 'nix');
  mkdirSync(nixDir);
  mkdirSync(join(root, 'etc-nix'));
  const holder = await startNamespaceHolder(nixDir, join(root, 'etc-nix'));
  const started: ChildProcess[] = [];
  return {
    nixDir,
    holderPid: holder.pid,
    run: (command, options = {}) =>
      new Promise((resolve, reject) => {
        // Entering a mount namespace resets the working directory to its root; --wd sets it again.
        const wd = options.cwd !== undefined ? [`--wd=${options.cwd}`] : [];
        const child = spawn('nsenter', ['-t', String(holder.pid), '-m', ...wd, '--', ...command], {
          env: options.env ?? process.env,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
        child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
        child.once('error', reject);
        child.once('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
      }),
    start: (command, env) => {
      const child = spawn('nsenter', ['-t', String(holder.pid), '-m', '--', ...command], { env: env ?? process.env, stdio: 'ignore' });
      started.push(child);
      return child;
    },
    async dispose() {
      // nix-daemon moves into a mount namespace of its own, out of sight of emptyNamespace: end it by its pid.
      for (const child of started) child.kill('SIGKILL');
      await emptyNamespace(holder.namespace, 3_000);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
