import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { builderSpecs, resolveBuilderSpec, type BuilderSpec, type ResolvedBuilderSpec } from './builderSpec.js';
import { startNamespaceHolder, type NamespaceHolder } from './builderNamespace.js';
import {
  knownHosts,
  machinesJson,
  nixConf,
  nixMachines,
  publicHostKeyField,
  SIGN_HOOK_FILE,
  signHookScript,
  sshConfig,
  sshdConfig,
  type BuilderFiles,
  type ClusterPaths,
} from './clusterFiles.js';
import { emptyNamespace, isAlive, pidsInNamespace, signalNamespace, waitForExit } from './namespaceProcesses.js';
import { freePort, waitForPort } from './ports.js';
import { generateKey, generateSigningKey } from './sshKeys.js';

export type { BuilderSpec } from './builderSpec.js';

/** One running test builder. `pid` changes when sshd is restarted. */
export interface ClusterBuilder {
  name: string;
  port: number;
  /** The sshd listener, or undefined while it is stopped or killed. */
  pid: number | undefined;
  /** The process holding the builder's mount namespace (target for nsenter). */
  namespacePid: number;
  /** `mnt:[inode]` of the builder's mount namespace. */
  namespace: string;
  /** `<dir>/<name>`: holds nix/ (the builder's /nix), etc-nix/, keys and logs. */
  root: string;
  /** The builder's /nix/store as seen from the host, readable without nsenter. */
  storeDir: string;
  sshdLog: string;
  maxJobs: number;
  systems: string[];
  features: string[];
  mandatoryFeatures: string[];
  speedFactor: number;
  /** `<type> <base64>` of the builder's public host key. */
  hostKeyLine: string;
  /** The same key as a machines-file `publicHostKey` (base64 of the line). */
  publicHostKey: string;
  /** `name:base64` of the key the builder signs its builds with (BuilderSpec.signingKeyName), for trusted-public-keys. */
  signingPublicKey?: string;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface StartClusterOptions {
  /** A folder owned by this cluster (created if missing); each test should use its own. */
  dir: string;
  builders?: BuilderSpec[];
}

const SSHD = '/usr/sbin/sshd';
const STARTUP_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 3_000;

interface BuilderState {
  info: ClusterBuilder;
  spec: ResolvedBuilderSpec;
  holder: NamespaceHolder;
  sshd: ChildProcess | undefined;
  sshdConfigFile: string;
}

export class TestCluster {
  readonly machinesFile: string;
  readonly sshConfigFile: string;
  readonly nixMachinesFile: string;
  readonly knownHostsFile: string;
  readonly clientKey: string;
  /** Every builder's AuthorizedKeysFile (one shared file, read at each login). */
  readonly authorizedKeysFile: string;
  /** What NIX_SSHOPTS must be for Nix's own `--builders @machines.nix` to reach the builders. */
  readonly nixSshOpts: string;
  readonly builders: ClusterBuilder[];
  private readonly states: Map<string, BuilderState>;
  private stopped = false;

  /** @internal use startCluster */
  constructor(
    readonly dir: string,
    paths: ClusterPaths,
    states: BuilderState[],
  ) {
    this.machinesFile = join(dir, 'machines.json');
    this.nixMachinesFile = join(dir, 'machines.nix');
    this.sshConfigFile = paths.sshConfig;
    this.knownHostsFile = paths.knownHosts;
    this.clientKey = paths.clientKey;
    this.authorizedKeysFile = paths.authorizedKeys;
    this.nixSshOpts = `-F ${paths.sshConfig}`;
    this.states = new Map(states.map((s) => [s.info.name, s]));
    this.builders = states.map((s) => s.info);
  }

  builder(name: string): ClusterBuilder {
    return this.state(name).info;
  }

  /** SIGKILL the builder's sshd and everything it started; its store stays inspectable. */
  async kill(name: string): Promise<void> {
    const state = this.state(name);
    const killed = signalNamespace(state.info.namespace, 'SIGKILL', [state.holder.pid]);
    await waitForExit(killed, STOP_TIMEOUT_MS);
    state.sshd = undefined;
    state.info.pid = undefined;
  }

  /** SIGSTOP every process of the builder: connections hang without closing. */
  pause(name: string): void {
    const state = this.state(name);
    signalNamespace(state.info.namespace, 'SIGSTOP', [state.holder.pid]);
  }

  resume(name: string): void {
    const state = this.state(name);
    signalNamespace(state.info.namespace, 'SIGCONT', [state.holder.pid]);
  }

  /** Stops the listener only: new connections are refused, open sessions continue. */
  async stopSshd(name: string): Promise<void> {
    const state = this.state(name);
    const pid = state.info.pid;
    if (pid === undefined) return;
    process.kill(pid, 'SIGCONT');
    process.kill(pid, 'SIGTERM');
    await waitForExit([pid], STOP_TIMEOUT_MS);
    await waitForPort(state.info.port, STOP_TIMEOUT_MS, () => false, false);
    state.sshd = undefined;
    state.info.pid = undefined;
  }

  /** Starts the listener again on the same port, e.g. after stopSshd or kill. */
  async startSshd(name: string): Promise<void> {
    const state = this.state(name);
    if (state.info.pid !== undefined && isAlive(state.info.pid)) return;
    await launchSshd(state);
  }

  /** Runs a command inside the builder's mount namespace (its /nix, its nix.conf). */
  runOnBuilder(name: string, command: string[], input?: string): Promise<CommandResult> {
    const state = this.state(name);
    return runCommand('nsenter', ['-t', String(state.holder.pid), '-m', '--', ...command], builderEnv(), input);
  }

  /** Live processes of the builder (holder included); empty after stop(). */
  processes(name: string): number[] {
    return pidsInNamespace(this.state(name).info.namespace);
  }

  /** SIGTERM (then SIGKILL) everything in every builder's namespace and wait until it is gone. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all([...this.states.values()].map((state) => stopBuilder(state)));
  }

  private state(name: string): BuilderState {
    const state = this.states.get(name);
    if (!state) throw new Error(`test cluster has no builder "${name}" (it has ${[...this.states.keys()].join(', ')})`);
    return state;
  }
}

async function stopBuilder(state: BuilderState): Promise<void> {
  await emptyNamespace(state.info.namespace, STOP_TIMEOUT_MS);
  state.sshd = undefined;
  state.info.pid = undefined;
}

/** The builder's own nix.conf (its /etc/nix), not the settings of the local Nix. */
function builderEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NIX_REMOTE: 'local' };
  for (const name of ['NIX_CONFIG', 'NIX_CONF_DIR', 'NIX_USER_CONF_FILES']) delete env[name];
  return env;
}

function runCommand(file: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<CommandResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.once('error', reject);
    child.once('close', (code, signal) => resolvePromise({ stdout, stderr, code: code ?? (signal ? 128 : 1) }));
    // A command that exits without reading its input (nix-store --init, mount) closes the pipe first:
    // EPIPE here is no failure of the command, whose exit code says how it went.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/**
 * Sets up the builder's /nix/var/nix as an installed Nix has it. A store's
 * first opening creates gcroots/profiles non-atomically: two Nix processes
 * starting at once on an empty /nix (a probe's nix-store --serve beside
 * another command) made one fail with "creating symlink ... File exists".
 * No real builder is in that state, so the test builders are not either.
 */
async function initialiseStore(holderPid: number, name: string): Promise<void> {
  const result = await runCommand('nsenter', ['-t', String(holderPid), '-m', '--', 'nix-store', '--init'], builderEnv());
  if (result.code !== 0) throw new Error(`could not initialise ${name}'s Nix store (nix-store --init): ${result.stderr.trim()}`);
}

/** Starts sshd inside the builder's namespace and waits until its port accepts connections. */
async function launchSshd(state: BuilderState): Promise<void> {
  const sshd = spawn('nsenter', ['-t', String(state.holder.pid), '-m', '--', SSHD, '-D', '-f', state.sshdConfigFile, '-E', state.info.sshdLog], {
    detached: true,
    stdio: 'ignore',
  });
  sshd.unref();
  let exited = false;
  sshd.once('exit', () => (exited = true));
  sshd.once('error', () => (exited = true));
  const up = await waitForPort(state.info.port, STARTUP_TIMEOUT_MS, () => exited);
  if (!up || sshd.pid === undefined) {
    sshd.kill('SIGKILL');
    const log = await readFile(state.info.sshdLog, 'utf8').catch(() => '');
    throw new SshdStartError(state.info.name, state.info.port, log.trim().split('\n').slice(-3).join(' / '));
  }
  state.sshd = sshd;
  state.info.pid = sshd.pid;
}

class SshdStartError extends Error {
  constructor(
    readonly builder: string,
    readonly port: number,
    readonly log: string,
  ) {
    super(`sshd for test builder ${builder} did not start on 127.0.0.1:${port}: ${log || 'no log output'}`);
  }
  get portTaken(): boolean {
    return /Address already in use|Cannot bind any address/.test(this.log);
  }
}

/** Picks a port and starts sshd, retrying with another port if sshd lost the race for it. */
async function launchOnFreePort(state: BuilderState, paths: ClusterPaths, write: (port: number) => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    state.info.port = port;
    await write(port);
    try {
      await launchSshd(state);
      return;
    } catch (error) {
      if (!(error instanceof SshdStartError && error.portTaken) || attempt >= 5) throw error;
    }
  }
}

async function prepareBuilder(dir: string, spec: ResolvedBuilderSpec, paths: ClusterPaths): Promise<BuilderState> {
  const root = join(dir, spec.name);
  await Promise.all(['nix', 'etc-nix', 'home'].map((sub) => mkdir(join(root, sub), { recursive: true })));
  const hostKeyFile = join(root, 'ssh_host_ed25519_key');
  const [hostKeyLine, signingPublicKey] = await Promise.all([
    generateKey(hostKeyFile, `${spec.name}-host-key`),
    spec.signingKeyName === undefined ? undefined : generateSigningKey(spec.signingKeyName, join(root, 'etc-nix')),
    writeFile(join(root, 'etc-nix', 'nix.conf'), nixConf(spec)),
  ]);
  if (spec.signingKeyName !== undefined && spec.signWith === 'post-build-hook') {
    // The builder's /etc/nix is its etc-nix folder.
    const hook = join(root, 'etc-nix', SIGN_HOOK_FILE.slice('/etc/nix/'.length));
    await writeFile(hook, signHookScript());
    await chmod(hook, 0o755);
  }
  const holder = await startNamespaceHolder(join(root, 'nix'), join(root, 'etc-nix'));
  if (spec.storeSizeMiB !== undefined) {
    // Only this builder's namespace sees the tmpfs; the host's view of <root>/nix/store stays the plain folder.
    await mkdir(join(root, 'nix', 'store'), { recursive: true });
    const mounted = await runCommand('nsenter', ['-t', String(holder.pid), '-m', '--', 'mount', '-t', 'tmpfs', '-o', `size=${spec.storeSizeMiB}m,mode=1775`, 'tmpfs', '/nix/store'], process.env);
    if (mounted.code !== 0) throw new Error(`could not mount a ${spec.storeSizeMiB} MiB tmpfs on ${spec.name}'s /nix/store: ${mounted.stderr.trim()}`);
  }
  await initialiseStore(holder.pid, spec.name);
  if (spec.pressure === 'idle') await showIdlePressure(holder.pid, join(root, 'idle-proc'), spec.name);
  const info: ClusterBuilder = {
    name: spec.name,
    port: 0,
    pid: undefined,
    namespacePid: holder.pid,
    namespace: holder.namespace,
    root,
    storeDir: join(root, 'nix', 'store'),
    sshdLog: join(root, 'sshd.log'),
    maxJobs: spec.maxJobs,
    systems: spec.systems,
    features: spec.features,
    mandatoryFeatures: spec.mandatoryFeatures,
    speedFactor: spec.speedFactor,
    hostKeyLine,
    publicHostKey: publicHostKeyField(hostKeyLine),
    ...(signingPublicKey !== undefined && { signingPublicKey }),
  };
  const state: BuilderState = { info, spec, holder, sshd: undefined, sshdConfigFile: join(root, 'sshd_config') };
  try {
    await launchOnFreePort(state, paths, (port) =>
      writeFile(state.sshdConfigFile, sshdConfig(builderFiles(state, hostKeyFile, port), paths, root)),
    );
  } catch (error) {
    await stopBuilder(state).catch(() => undefined);
    throw error;
  }
  return state;
}

function builderFiles(state: BuilderState, hostKeyFile: string, port: number): BuilderFiles {
  return {
    spec: state.spec,
    port,
    hostKeyFile,
    hostKeyLine: state.info.hostKeyLine,
    pidFile: join(state.info.root, 'sshd.pid'),
  };
}

async function writeClientFiles(dir: string, states: BuilderState[], paths: ClusterPaths): Promise<void> {
  const files = states.map((s) => builderFiles(s, join(s.info.root, 'ssh_host_ed25519_key'), s.info.port));
  await Promise.all([
    writeFile(paths.knownHosts, knownHosts(files)),
    writeFile(paths.sshConfig, sshConfig(files, paths)),
    writeFile(join(dir, 'machines.json'), machinesJson(files, paths)),
    writeFile(join(dir, 'machines.nix'), nixMachines(files, paths)),
    writeFile(
      join(dir, 'cluster.json'),
      JSON.stringify(
        { pid: process.pid, builders: states.map((s) => ({ name: s.info.name, namespace: s.info.namespace, port: s.info.port })) },
        null,
        2,
      ) + '\n',
    ),
  ]);
}

/**
 * Starts the builders (default: aquamarine, ruby, kana) as sshd servers on
 * loopback ports, each with its own empty Nix store. Needs root, sshd, unshare,
 * nsenter and nix-store (see test/support/requireIntegration.ts).
 */
export async function startCluster(options: StartClusterOptions): Promise<TestCluster> {
  const dir = resolve(options.dir);
  const specs = (options.builders ?? builderSpecs(3)).map(resolveBuilderSpec);
  const names = specs.map((s) => s.name);
  const duplicate = names.find((name, i) => names.indexOf(name) !== i);
  if (duplicate) throw new Error(`test cluster builder "${duplicate}" is listed twice`);
  await mkdir(dir, { recursive: true });
  // sshd's privilege separation directory; Debian creates it only from its service unit.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const paths: ClusterPaths = {
    dir,
    clientKey: join(dir, 'client_key'),
    authorizedKeys: join(dir, 'authorized_keys'),
    knownHosts: join(dir, 'known_hosts'),
    sshConfig: join(dir, 'ssh_config'),
  };
  const clientLine = await generateKey(paths.clientKey, 'offload-test-client');
  await writeFile(paths.authorizedKeys, `${clientLine} offload-test-client\n`);

  const started = await Promise.allSettled(specs.map((spec) => prepareBuilder(dir, spec, paths)));
  const states = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failure = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  try {
    if (failure) throw failure.reason;
    await writeClientFiles(dir, states, paths);
  } catch (error) {
    await Promise.allSettled(states.map((state) => stopBuilder(state)));
    throw error;
  }
  return new TestCluster(dir, paths, states);
}

/** PSI files as an idle kernel writes them; cpu's "full" line exists since Linux 5.13 and is harmless before. */
const IDLE_PSI = 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n';

/**
 * Bind-mounts idle figures over /proc/pressure/* and /proc/loadavg in the
 * builder's namespace only, so offload's pressure gate sees the builder's
 * "own" machine rather than every other test running on this one.
 */
async function showIdlePressure(holderPid: number, dir: string, name: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const files: Array<[string, string]> = [['loadavg', '/proc/loadavg']];
  for (const kind of ['cpu', 'memory', 'io']) {
    if (existsSync(`/proc/pressure/${kind}`)) files.push([kind, `/proc/pressure/${kind}`]);
  }
  await Promise.all(files.map(([file]) => writeFile(join(dir, file), file === 'loadavg' ? '0.00 0.00 0.00 1/100 1\n' : IDLE_PSI)));
  const script = files.map(([file, target]) => `mount --bind '${join(dir, file)}' ${target}`).join(' && ');
  const mounted = await runCommand('nsenter', ['-t', String(holderPid), '-m', '--', 'sh', '-c', script], process.env);
  if (mounted.code !== 0) throw new Error(`could not show ${name} an idle /proc/pressure: ${mounted.stderr.trim()}`);
}
