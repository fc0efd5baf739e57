import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import ssh2, { Client, type AnyAuthMethod, type ClientChannel, type ConnectConfig, type ParsedKey } from 'ssh2';

// ssh2 is CommonJS: `utils` exists only on the default export under ESM.
const { utils } = ssh2;
import type { Machine } from '../config/machine.js';
import { KeyFileError } from '../config/errors.js';
import { checkKeyFile } from '../config/keyFile.js';
import type { OffloadError } from '../errors/offloadError.js';
import { checkHostKey, expectedKeyTypes, hostKeyAlgorithms, type HostKeyPolicy } from './hostKey.js';
import { defaultKnownHostsFiles, keysForHost, knownHostsName, loadKnownHosts } from './knownHosts.js';
import { ChannelOpenError, ConnectionLostError, connectFailure, ProbeReplyTooLargeError, ProbeTimeoutError } from './sshErrors.js';
import type { ServeTransport } from './transport.js';

/**
 * One SSH connection per builder, opened on first use and shared by every job
 * on that builder: each running job gets its own channel (`nix-store --serve`
 * or a probe command), so there is no per-job handshake. The host key is
 * verified during the handshake, before authentication and before any channel.
 * A dead connection (closed, reset, or keep-alives unanswered) is dropped and
 * reported with a 'down' event; the next use connects again.
 */
export interface SshPoolOptions {
  /** TCP connect + SSH handshake + authentication must finish within this (default 10 s). */
  connectTimeoutMs?: number;
  /** Keep-alive request interval on every connection (default 5 s). */
  keepaliveIntervalMs?: number;
  /** Unanswered keep-alives before a connection counts as dead (default 3: a hung host is noticed in ≈ 15–20 s). */
  keepaliveCountMax?: number;
  /** Close a connection that has had no channel for this long (default 0: keep until closeAll). */
  idleTimeoutMs?: number;
  /** known_hosts files for hosts without userKnownHostsFiles (default ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts, ...). */
  knownHostsFiles?: string[];
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status, or null when the command was killed by a signal. */
  code: number | null;
  signal?: string;
}

export const SERVE_COMMAND = 'nix-store --serve --write';

/** Per stream of one probe reply: `nix show-config --json` is ~30 KiB. */
export const MAX_PROBE_REPLY_BYTES = 1024 * 1024;

interface Connection {
  client: Client;
  ready: Promise<void>;
  /** The handshake and login finished. */
  established: boolean;
  channels: number;
  /** Channels ssh2 has handed over and not yet closed. */
  open: Set<ClientChannel>;
  idleTimer?: NodeJS.Timeout;
  closing: boolean;
}

type PoolEvents = { down: [host: string, error: OffloadError] };

export class SshPool extends EventEmitter<PoolEvents> {
  private readonly connections = new Map<string, Connection>();
  private readonly options: Required<SshPoolOptions>;

  constructor(options: SshPoolOptions = {}) {
    super();
    this.options = {
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 5_000,
      keepaliveCountMax: options.keepaliveCountMax ?? 3,
      idleTimeoutMs: options.idleTimeoutMs ?? 0,
      knownHostsFiles: options.knownHostsFiles ?? defaultKnownHostsFiles(),
    };
  }

  /** Connects (or waits for the connection in progress); rejects with a classified SSH error. */
  async connect(machine: Machine): Promise<void> {
    await this.connection(machine).ready;
  }

  isConnected(host: string): boolean {
    return this.connections.has(host);
  }

  /** `nix-store --serve --write` on a new channel of the host's connection. */
  async openServe(machine: Machine): Promise<ServeTransport> {
    const channel = await this.openChannel(machine, SERVE_COMMAND);
    return {
      stdin: channel,
      stdout: channel,
      stderr: channel.stderr,
      host: machine.hostName,
      close: () => channel.close(),
    };
  }

  /**
   * Runs a short probe command (e.g. `nix-store --version`) and collects its
   * output, at most `maxReplyBytes` on each of stdout and stderr: a builder
   * that sends more is not answering a probe, and its reply is never buffered.
   */
  async exec(machine: Machine, command: string, { maxReplyBytes = MAX_PROBE_REPLY_BYTES, timeoutMs }: { maxReplyBytes?: number; timeoutMs?: number } = {}): Promise<ExecResult> {
    let code: number | null = null;
    let signal: string | undefined;
    // ssh2 parses every packet of a TCP read in one go: a fast command's exit
    // status can arrive in the same read as the channel's opening, before an
    // await would let us listen. So listen from inside ssh2's callback.
    const opening = this.openChannel(machine, command, (opened) =>
      opened.on('exit', (exitCode: number | null, exitSignal?: string) => {
        code = exitCode;
        signal = exitSignal ?? undefined;
      }),
    );
    // A hung builder may never open the channel, or never end the command: the whole exchange is bounded.
    const started = performance.now();
    const channel = timeoutMs === undefined ? await opening : await openedWithin(opening, timeoutMs, () => new ProbeTimeoutError(machine.hostName, command, timeoutMs));
    return new Promise((resolve, reject) => {
      let tooLarge: ProbeReplyTooLargeError | undefined;
      let timedOut: ProbeTimeoutError | undefined;
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(
              () => {
                timedOut = new ProbeTimeoutError(machine.hostName, command, timeoutMs);
                channel.close();
                // A connection too hung to confirm the close must not keep the caller waiting.
                reject(timedOut);
              },
              Math.max(0, timeoutMs - (performance.now() - started)),
            );
      const collect = (stream: 'stdout' | 'stderr') => {
        const chunks: Buffer[] = [];
        let size = 0;
        return {
          chunks,
          add: (data: Buffer) => {
            if (tooLarge) return;
            size += data.length;
            if (size > maxReplyBytes) {
              tooLarge = new ProbeReplyTooLargeError(machine.hostName, command, stream, maxReplyBytes);
              channel.close();
              return;
            }
            chunks.push(data);
          },
        };
      };
      const stdout = collect('stdout');
      const stderr = collect('stderr');
      channel.on('data', stdout.add);
      channel.stderr.on('data', stderr.add);
      channel.on('close', () => {
        clearTimeout(timer);
        if (timedOut) return;
        if (tooLarge) return reject(tooLarge);
        // sshd always reports an exit status or signal; without one the connection died.
        if (code === null && signal === undefined) {
          reject(new ConnectionLostError(machine.hostName, `the connection closed while running ${command}`));
          return;
        }
        resolve({
          stdout: Buffer.concat(stdout.chunks).toString('utf8'),
          stderr: Buffer.concat(stderr.chunks).toString('utf8'),
          code,
          ...(signal ? { signal } : {}),
        });
      });
      channel.end();
    });
  }

  /**
   * Sends a signal (`INT`, `TERM`: SSH's "signal" channel request) to the
   * command of every open channel, so `nix-store --serve` stops its build at
   * once rather than when it next notices its input closed. sshd delivers it
   * to the session's process group.
   */
  signalAll(signal: 'INT' | 'TERM'): void {
    for (const connection of this.connections.values()) {
      for (const channel of connection.open) {
        try {
          channel.signal(signal);
        } catch {
          // A channel closing as we ask: nothing left to stop.
        }
      }
    }
  }

  /** Ends every connection (no 'down' events) and waits until their sockets are closed; a connect in progress is abandoned. */
  async closeAll(): Promise<void> {
    const all = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(all.map((connection) => closeConnection(connection)));
  }

  private connection(machine: Machine): Connection {
    const existing = this.connections.get(machine.hostName);
    if (existing) return existing;
    const client = new Client();
    const connection: Connection = { client, ready: Promise.resolve(), established: false, channels: 0, open: new Set(), closing: false };
    connection.ready = this.establish(machine, connection);
    connection.ready.catch(() => {
      if (this.connections.get(machine.hostName) === connection) this.connections.delete(machine.hostName);
    });
    this.connections.set(machine.hostName, connection);
    return connection;
  }

  private async establish(machine: Machine, connection: Connection): Promise<void> {
    const [auth, policy] = await Promise.all([authMethods(machine), hostKeyPolicy(machine, this.options.knownHostsFiles)]);
    const { client } = connection;
    if (connection.closing) throw new ConnectionLostError(machine.hostName, 'the pool was closed while connecting');
    let refusedKey: OffloadError | undefined;
    const config: ConnectConfig = {
      host: policy.address,
      port: policy.port,
      username: auth.user,
      authHandler: auth.methods,
      readyTimeout: this.options.connectTimeoutMs,
      keepaliveInterval: this.options.keepaliveIntervalMs,
      keepaliveCountMax: this.options.keepaliveCountMax,
      algorithms: { serverHostKey: hostKeyAlgorithms(expectedKeyTypes(policy)) as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] },
      hostVerifier: (key: Buffer) => {
        const decision = checkHostKey(key, policy);
        if (!decision.accepted) refusedKey = decision.error;
        return decision.accepted;
      },
    };
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      let lastError: Error | undefined;
      client.on('ready', () => {
        ready = true;
        connection.established = true;
        resolve();
      });
      client.on('error', (error: Error) => {
        lastError = error;
        if (!ready) {
          reject(refusedKey ?? connectFailure(error, machine.hostName, policy.address, policy.port, auth, this.options.connectTimeoutMs));
        }
      });
      client.on('close', () => {
        if (!ready) {
          if (connection.closing) return reject(new ConnectionLostError(machine.hostName, 'the pool was closed while connecting'));
          reject(refusedKey ?? connectFailure(lastError, machine.hostName, policy.address, policy.port, auth, this.options.connectTimeoutMs));
          return;
        }
        this.lost(machine.hostName, connection, lastError);
      });
      client.connect(config);
    });
    if (connection.closing) throw new ConnectionLostError(machine.hostName, 'the pool was closed while connecting');
    this.scheduleIdleClose(machine.hostName, connection);
  }

  private lost(host: string, connection: Connection, error: Error | undefined): void {
    clearTimeout(connection.idleTimer);
    if (this.connections.get(host) === connection) this.connections.delete(host);
    if (connection.closing) return;
    const hung = error?.message === 'Keepalive timeout';
    const reason = hung
      ? `no answer to ${this.options.keepaliveCountMax} keep-alives ${this.options.keepaliveIntervalMs} ms apart`
      : (error?.message ?? 'closed by the host');
    this.emit('down', host, new ConnectionLostError(host, reason, { cause: error, hung }));
  }

  /** `attach` runs synchronously when ssh2 hands over the channel, before any of its events can be missed. */
  private async openChannel(machine: Machine, command: string, attach?: (channel: ClientChannel) => void): Promise<ClientChannel> {
    const connection = this.connection(machine);
    await connection.ready;
    connection.channels++;
    clearTimeout(connection.idleTimer);
    try {
      const channel = await new Promise<ClientChannel>((resolve, reject) =>
        connection.client.exec(command, (error, channel) => {
          if (error) return reject(error);
          // A command that dies at once can close its channel before an await resumes.
          connection.open.add(channel);
          channel.once('close', () => {
            connection.open.delete(channel);
            this.channelClosed(machine.hostName, connection);
          });
          attach?.(channel);
          resolve(channel);
        }),
      );
      return channel;
    } catch (error) {
      this.channelClosed(machine.hostName, connection);
      const reason = error instanceof Error ? error.message : String(error);
      if (!this.connections.has(machine.hostName) || reason === 'No response from server') {
        throw new ConnectionLostError(machine.hostName, `the connection closed while opening a channel for ${command}`, { cause: error });
      }
      throw new ChannelOpenError(machine.hostName, connection.channels, reason, { cause: error });
    }
  }

  private channelClosed(host: string, connection: Connection): void {
    connection.channels--;
    this.scheduleIdleClose(host, connection);
  }

  private scheduleIdleClose(host: string, connection: Connection): void {
    if (this.options.idleTimeoutMs <= 0 || connection.channels > 0 || connection.closing) return;
    clearTimeout(connection.idleTimer);
    connection.idleTimer = setTimeout(() => {
      if (connection.channels > 0) return;
      if (this.connections.get(host) === connection) this.connections.delete(host);
      void closeConnection(connection);
    }, this.options.idleTimeoutMs);
    connection.idleTimer.unref();
  }
}

async function closeConnection(connection: Connection): Promise<void> {
  connection.closing = true;
  clearTimeout(connection.idleTimer);
  if (!connection.established) {
    // Waiting for a hung handshake would hold the caller (an interrupted run) for the whole connect timeout.
    connection.client.destroy();
    await connection.ready.catch(() => undefined);
    return;
  }
  const closed = new Promise<void>((resolve) => {
    connection.client.once('close', () => resolve());
    // A connection whose peer is hung never answers the disconnect.
    setTimeout(() => {
      connection.client.destroy();
      resolve();
    }, 2_000).unref();
  });
  connection.client.end();
  await closed;
}

export interface ClientAuth {
  user: string;
  /** The key files offered, for messages (never their contents). */
  keyFiles: string[];
  methods: AnyAuthMethod[];
}

/** Default identities ssh tries when neither the machines file nor ssh_config names one. */
function defaultIdentityFiles(): string[] {
  const ssh = join(homedir(), '.ssh');
  return ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((name) => join(ssh, name)).filter((path) => existsSync(path));
}

async function authMethods(machine: Machine): Promise<ClientAuth> {
  const user = machine.sshUser ?? userInfo().username;
  const configured = machine.identityFiles ?? (machine.sshKey ? [machine.sshKey] : undefined);
  const keyFiles = configured ?? defaultIdentityFiles();
  const methods: AnyAuthMethod[] = [];
  for (const file of keyFiles) {
    await checkKeyFile(file, machine.hostName);
    const key = utils.parseKey(await readFile(file));
    if (key instanceof Error) {
      throw new KeyFileError(
        `SSH key ${file} for host ${machine.hostName} cannot be used: ${key.message} (offload needs an unencrypted key, or the key loaded in ssh-agent)`,
      );
    }
    // ssh2 returns an array for a file holding several keys; its types leave that out.
    methods.push({ type: 'publickey', username: user, key: Array.isArray(key) ? (key as ParsedKey[])[0]! : key });
  }
  if (process.env.SSH_AUTH_SOCK) methods.push({ type: 'agent', username: user, agent: process.env.SSH_AUTH_SOCK });
  return { user, keyFiles, methods };
}

async function hostKeyPolicy(machine: Machine, defaultFiles: string[]): Promise<HostKeyPolicy> {
  const address = machine.address || machine.hostName;
  const port = machine.port || 22;
  const knownHostsFiles = machine.publicHostKey ? [] : (machine.userKnownHostsFiles ?? defaultFiles);
  const entries = await loadKnownHosts(knownHostsFiles);
  // OpenSSH looks keys up under the address; an alias's key may also be recorded
  // under the alias itself, bare, as ssh_config HostKeyAlias writes it.
  const aliasNames = machine.hostName === address ? [] : [knownHostsName(machine.hostName, port), machine.hostName.toLowerCase()];
  const names = [...new Set([knownHostsName(address, port), ...aliasNames])];
  return {
    host: machine.hostName,
    address,
    port,
    ...(machine.publicHostKey ? { pinned: machine.publicHostKey } : {}),
    known: keysForHost(entries, names),
    knownHostsFiles,
    acceptUnknown: machine.acceptUnknownHostKey ?? false,
  };
}

/** The channel, or the timeout's error; a channel that opens too late is closed at once. */
async function openedWithin(opening: Promise<ClientChannel>, timeoutMs: number, timeoutError: () => Error): Promise<ClientChannel> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timeoutError()), timeoutMs);
  });
  try {
    return await Promise.race([opening, expired]);
  } catch (error) {
    opening.then((late) => late.close(), () => undefined);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
