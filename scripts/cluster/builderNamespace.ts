import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { mountNamespaceOf } from './namespaceProcesses.js';

/**
 * The holder of one builder's mount namespace: a shell that bind-mounts the
 * builder's folders over /nix and /etc/nix, then waits on its stdin. Every
 * other builder process enters this namespace with `nsenter -t <pid> -m`.
 * When the test process dies (even by SIGKILL) the stdin pipe closes and the
 * holder kills everything in its namespace, so a crashed test leaves nothing.
 */
const HOLDER_SCRIPT = `
mount --bind "$1" /nix && mount --bind "$2" /etc/nix || exit 1
echo ready
read line || true
me=$(readlink /proc/$$/ns/mnt)
for p in /proc/[0-9]*; do
  pid=\${p#/proc/}
  if [ "$pid" != "$$" ] && [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$me" ]; then
    kill -9 "$pid" 2>/dev/null || true
  fi
done
exit 0
`;

export interface NamespaceHolder {
  pid: number;
  /** `mnt:[inode]`: identifies the namespace for the rest of its life. */
  namespace: string;
  child: ChildProcess;
}

/**
 * Creating the namespace failed once, without a message, on a machine loaded
 * by parallel test runs; a second try worked. Retry a few times before giving up.
 */
const HOLDER_ATTEMPTS = 3;

export async function startNamespaceHolder(nixDir: string, etcNixDir: string): Promise<NamespaceHolder> {
  // The mount points: a machine whose Nix was never set up has neither.
  mkdirSync('/nix', { recursive: true });
  mkdirSync('/etc/nix', { recursive: true });
  for (let attempt = 1; ; attempt++) {
    try {
      return await tryStartNamespaceHolder(nixDir, etcNixDir);
    } catch (error) {
      if (attempt >= HOLDER_ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

async function tryStartNamespaceHolder(nixDir: string, etcNixDir: string): Promise<NamespaceHolder> {
  const child = spawn(
    'unshare',
    ['-m', '--propagation', 'private', '--', 'sh', '-c', HOLDER_SCRIPT, 'builder-namespace', nixDir, etcNixDir],
    { detached: true, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const stderr: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (text: string) => stderr.push(text));
  const ready = await new Promise<boolean>((resolve) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => resolve(line === 'ready'));
    child.once('exit', () => resolve(false));
    child.once('error', () => resolve(false));
  });
  const namespace = child.pid === undefined ? undefined : mountNamespaceOf(child.pid);
  if (!ready || child.pid === undefined || namespace === undefined) {
    child.kill('SIGKILL');
    throw new Error(`could not create a mount namespace for ${nixDir}: ${stderr.join('').trim() || 'unshare failed'}`);
  }
  // The cluster must not keep the test process alive; the pipe stays open until it exits.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void })?.unref?.();
  return { pid: child.pid, namespace, child };
}
