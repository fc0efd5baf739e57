import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestCluster } from '../../scripts/cluster/testCluster.js';
import { startPrivateStore, type CommandResult, type PrivateStore } from './privateStore.js';

/**
 * A multi-user Nix of the test's own, as NixOS and the official installer set
 * it up: a nix-daemon (root) on a private store, and an unprivileged user
 * (`nobody`, present on every Debian) whose commands reach the store only
 * through the daemon's socket. The daemon's nix.conf is in a folder of its
 * own, shared with the user's processes as /etc/nix would be, so offload
 * reads the daemon's trusted-public-keys the way it does on a real machine.
 */
export interface DaemonStore {
  store: PrivateStore;
  /** The daemon's NIX_CONF_DIR. */
  confDir: string;
  /** The user's home, owned by the user. */
  home: string;
  user: { name: string; uid: number; gid: number };
  /** (Re)starts the daemon with these settings and waits for its socket. */
  startDaemon(settings: DaemonSettings): Promise<void>;
  /** Runs a command as the user, through the daemon. */
  asUser(command: string[], options?: { cwd?: string }): Promise<CommandResult>;
  /** Runs a command as root with the store opened directly (no daemon). */
  asRoot(command: string[]): Promise<CommandResult>;
  /** The cluster's machines, ssh config and client key, copied where the user can read them, for `names` only. */
  userMachines(cluster: TestCluster, names: readonly string[]): { machinesFile: string; sshConfigFile: string };
  /** A folder the user may write in (a build's working directory). */
  userFolder(label: string): string;
  dispose(): Promise<void>;
}

export interface DaemonSettings {
  trustedUsers: readonly string[];
  trustedPublicKeys: readonly string[];
}

const USER = { name: 'nobody', uid: 65534, gid: 65534 };
const SOCKET = 'var/nix/daemon-socket/socket';

export async function startDaemonStore(label: string): Promise<DaemonStore> {
  const store = await startPrivateStore(label);
  const root = mkdtempSync(join(tmpdir(), `offload-${label}-user-`));
  // Everyone may pass through, as through /etc/nix and /home; what is inside has its own owner.
  chmodSync(root, 0o755);
  const confDir = join(root, 'nix-conf');
  const home = join(root, 'home');
  mkdirSync(confDir, { mode: 0o755 });
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, USER.uid, USER.gid);
  let daemon: ChildProcess | undefined;
  let folders = 0;

  const rootEnv = { ...process.env, NIX_REMOTE: 'local', NIX_CONF_DIR: confDir, NIX_USER_CONF_FILES: '', NIX_CONFIG: '' };
  const userEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    USER: USER.name,
    LOGNAME: USER.name,
    NIX_REMOTE: 'daemon',
    NIX_CONF_DIR: confDir,
    NIX_USER_CONF_FILES: '',
    NIX_CONFIG: '',
  };

  async function stopDaemon(): Promise<void> {
    const running = daemon;
    daemon = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGTERM');
    await exited;
  }

  return {
    store,
    confDir,
    home,
    user: USER,
    async startDaemon(settings) {
      await stopDaemon();
      writeFileSync(
        join(confDir, 'nix.conf'),
        [
          'substituters =',
          'sandbox = false',
          'build-users-group =',
          `trusted-users = ${settings.trustedUsers.join(' ')}`,
          `trusted-public-keys = ${settings.trustedPublicKeys.join(' ')}`,
          '',
        ].join('\n'),
        { mode: 0o644 },
      );
      const socket = join(store.nixDir, SOCKET);
      rmSync(socket, { force: true });
      daemon = store.start(['nix-daemon'], rootEnv);
      for (let i = 0; i < 200 && !existsSync(socket); i++) await new Promise((resolve) => setTimeout(resolve, 50));
      if (!existsSync(socket)) throw new Error(`nix-daemon made no socket at ${socket}`);
    },
    asUser: (command, options = {}) =>
      store.run(['setpriv', `--reuid=${USER.uid}`, `--regid=${USER.gid}`, '--clear-groups', '--', ...command], {
        env: userEnv,
        ...(options.cwd !== undefined && { cwd: options.cwd }),
      }),
    asRoot: (command) => store.run(command, { env: rootEnv }),
    userMachines(cluster, names) {
      const dir = join(root, `machines-${names.join('-')}`);
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      const key = join(dir, 'client_key');
      copyFileSync(cluster.clientKey, key);
      chownSync(key, USER.uid, USER.gid);
      const knownHosts = join(dir, 'known_hosts');
      copyFileSync(cluster.knownHostsFile, knownHosts);
      const machines = (JSON.parse(readFileSync(cluster.machinesFile, 'utf8')) as Array<{ hostName: string; sshKey: string }>)
        .filter((m) => names.includes(m.hostName))
        .map((m) => ({ ...m, sshKey: key }));
      const machinesFile = join(dir, 'machines.json');
      writeFileSync(machinesFile, JSON.stringify(machines, null, 2), { mode: 0o644 });
      const sshConfigFile = join(dir, 'ssh_config');
      const sshConfig = readFileSync(cluster.sshConfigFile, 'utf8').replaceAll(cluster.clientKey, key).replaceAll(cluster.knownHostsFile, knownHosts);
      writeFileSync(sshConfigFile, sshConfig, { mode: 0o644 });
      return { machinesFile, sshConfigFile };
    },
    userFolder(label) {
      const dir = join(root, `${label}-${++folders}`);
      mkdirSync(dir, { mode: 0o755 });
      chownSync(dir, USER.uid, USER.gid);
      return dir;
    },
    async dispose() {
      await stopDaemon();
      await store.dispose();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
