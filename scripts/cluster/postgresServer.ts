import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitForPort } from './ports.js';

/**
 * A private PostgreSQL server for tests and benchmarks, started the way the
 * test cluster starts sshd: Debian's `postgresql` binaries, `initdb` into a
 * temp dir as an unprivileged user (PostgreSQL refuses to run as root), a
 * free loopback port and a Unix socket in that dir. A holder shell owns the
 * server and waits on a pipe from this process: when this process dies, even
 * by SIGKILL, the pipe closes and the holder stops the server.
 *
 * The server has a role `offload` (password login over TCP) owning a
 * database `offload`: `server.url` is what `--state` takes.
 */
export interface PostgresServer {
  /** `postgres://offload:<password>@127.0.0.1:<port>/offload`. */
  readonly url: string;
  readonly port: number;
  readonly password: string;
  readonly dir: string;
  /** Runs SQL as the superuser over the Unix socket (psql -At). */
  superuser(sql: string, database?: string): string;
  /** Fast shutdown (SIGINT): clients are disconnected, the port closes. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data dir. */
  start(): Promise<void>;
  /** SIGKILLs the postmaster: the next start runs crash recovery. */
  crash(): Promise<void>;
  /** Stops it for good and removes its dir. */
  dispose(): Promise<void>;
}

const HOLDER_SCRIPT = `
"$0" "$@" &
pid=$!
echo "started $pid"
read line || true
kill -INT "$pid" 2>/dev/null
wait "$pid"
`;

/** Debian installs each major version under /usr/lib/postgresql/<major>/bin; the newest wins. */
export function postgresBinDir(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const majors = readdirSync(base)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(base, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] === undefined ? undefined : join(base, majors[0], 'bin');
}

/** The unprivileged account the server runs as: Debian's `postgres`, else `nobody`. */
function serverAccount(): { uid: number; gid: number } {
  for (const name of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
      if (uid > 0) return { uid, gid };
    } catch {
      // Try the next account.
    }
  }
  throw new Error('no unprivileged account (postgres or nobody) to run PostgreSQL as');
}

export async function startPostgres(label = 'pg'): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('PostgreSQL is not installed (apt-get install postgresql; scripts/install-system-deps.sh does it)');
  const root = await mkdtemp(join(tmpdir(), `offload-${label}-`));
  const account = process.getuid?.() === 0 ? serverAccount() : undefined;
  const asServer = account ? { uid: account.uid, gid: account.gid } : {};
  const data = join(root, 'data');
  const socketDir = join(root, 'socket');
  mkdirSync(socketDir);
  if (account) {
    chownSync(root, account.uid, account.gid);
    chownSync(socketDir, account.uid, account.gid);
  }
  const password = `pw-${Math.random().toString(36).slice(2, 12)}`;
  const pwFile = join(root, 'superuser-password');
  writeFileSync(pwFile, `${password}-super\n`, { mode: 0o600 });
  if (account) chownSync(pwFile, account.uid, account.gid);
  const env = { ...process.env, LC_ALL: 'C', TZ: 'UTC' };
  execFileSync(
    join(bin, 'initdb'),
    ['-D', data, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', `--pwfile=${pwFile}`, '-E', 'UTF8', '--no-sync'],
    { ...asServer, env, stdio: ['ignore', 'ignore', 'pipe'] },
  );

  let port = 0;
  let holder: ChildProcess | undefined;
  let exited = true;
  const launch = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      if (port === 0 || attempt > 1) port = await freePort();
      const child = spawn(
        'sh',
        [
          '-c',
          HOLDER_SCRIPT,
          join(bin, 'postgres'),
          '-D', data,
          '-k', socketDir,
          '-h', '127.0.0.1',
          '-p', String(port),
          // Tests only: durability is not the point, speed on a loaded machine is.
          '-c', 'fsync=off',
          '-c', 'synchronous_commit=off',
          '-c', 'full_page_writes=off',
          '-c', 'max_connections=200',
          '-c', `log_directory=${root}`,
        ],
        { ...asServer, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] },
      );
      exited = false;
      child.once('exit', () => (exited = true));
      let log = '';
      child.stderr.setEncoding('utf8').on('data', (text: string) => (log = (log + text).slice(-4000)));
      child.stdout.resume();
      const up = (await waitForPort(port, 30_000, () => exited)) && (await accepting(30_000));
      if (up) {
        child.unref();
        for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void })?.unref?.();
        holder = child;
        return;
      }
      child.kill('SIGKILL');
      if (!/could not bind|Address already in use/.test(log) || attempt >= 5) {
        throw new Error(`PostgreSQL did not start on 127.0.0.1:${port}: ${log.trim().split('\n').slice(-3).join(' / ')}`);
      }
    }
  };
  /** The port opens before recovery ends; pg_isready says when sessions are accepted. */
  const accepting = async (timeoutMs: number): Promise<boolean> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !exited) {
      try {
        execFileSync(join(bin, 'pg_isready'), ['-q', '-h', socketDir, '-p', String(port)], { stdio: 'ignore' });
        return true;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return false;
  };
  const postmasterPid = (): number | undefined => {
    try {
      return Number(execFileSync('head', ['-1', join(data, 'postmaster.pid')], { encoding: 'utf8' }).trim()) || undefined;
    } catch {
      return undefined;
    }
  };
  const waitExit = async (timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!exited && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  };
  const stop = async (): Promise<void> => {
    if (!holder || exited) return;
    holder.stdin!.end('stop\n');
    await waitExit(20_000);
    if (!exited) {
      const pid = postmasterPid();
      if (pid) process.kill(pid, 'SIGKILL');
      holder.kill('SIGKILL');
      await waitExit(5_000);
    }
    await waitForPort(port, 5_000, () => false, false);
  };
  const superuser = (sql: string, database = 'postgres'): string =>
    execFileSync(join(bin, 'psql'), ['-h', socketDir, '-p', String(port), '-U', 'postgres', '-d', database, '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql], {
      ...asServer,
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });

  try {
    await launch();
    superuser(`CREATE ROLE offload LOGIN PASSWORD '${password}'`);
    superuser('CREATE DATABASE offload OWNER offload');
  } catch (error) {
    await stop().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
    throw error;
  }
  const server: PostgresServer = {
    get url() {
      return `postgres://offload:${password}@127.0.0.1:${port}/offload`;
    },
    get port() {
      return port;
    },
    password,
    dir: root,
    superuser,
    stop,
    start: launch,
    async crash() {
      const pid = postmasterPid();
      if (pid) process.kill(pid, 'SIGKILL');
      // The backends notice their postmaster is gone and exit; the holder then ends.
      holder?.stdin?.end('stop\n');
      await waitExit(10_000);
      await waitForPort(port, 5_000, () => false, false);
    },
    async dispose() {
      await stop();
      await rm(root, { recursive: true, force: true });
    },
  };
  return server;
}
