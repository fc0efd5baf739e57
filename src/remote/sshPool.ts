import { EventEmitter } from 'node:events';
import { Client, type ClientChannel, type ConnectConfig, type NegotiatedAlgorithms } from 'ssh2';
import type { Machine } from '../config/machine.js';
import type { OffloadError } from '../errors/offloadError.js';
import { checkHostKey, expectedKeyTypes, hostKeyAlgorithms, keyTypeOfBlob, sha256Fingerprint } from './hostKey.js';
import { checkKeyFile } from '../config/keyFile.js';
import { clientAuth } from './identities.js';
import { hostKeyPolicy, knownHostsNamesFor, userKnownHostsFilesFor } from './expectedHostKey.js';
import { DEFAULT_GLOBAL_KNOWN_HOSTS_FILES, defaultUserKnownHostsFiles } from './knownHosts.js';
import { recordHostKey } from './recordHostKey.js';
import { openedWithin, probeReply, type ExecResult } from './probeReply.js';
import { ChannelOpenError, ConnectionLostError, connectFailure, ProbeTimeoutError } from './sshErrors.js';
import type { ServeTransport } from './transport.js';

export type { ExecResult } from './probeReply.js';

/** Timeouts and trust settings of a pool. */
export interface SshPoolOptions {
  /** TCP connect + SSH handshake + authentication must finish within this (default 10 s). */
  connectTimeoutMs?: number;
  /** Keep-alive request interval on every connection (default 5 s). */
  keepaliveIntervalMs?: number;
  /** Unanswered keep-alives before a connection counts as dead (default 3: a hung host is noticed in ≈ 15–20 s). */
  keepaliveCountMax?: number;
  /** Close a connection that has had no channel for this long (default 0: keep until closeAll). */
  idleTimeoutMs?: number;
  /** The user's known_hosts files for hosts without UserKnownHostsFile (default ~/.ssh/known_hosts, ~/.ssh/known_hosts2). */
  knownHostsFiles?: string[];
  /** Global known_hosts files for hosts without GlobalKnownHostsFile (default /etc/ssh/ssh_known_hosts, ssh_known_hosts2). */
  globalKnownHostsFiles?: string[];
  /** Receives debug lines: identity files skipped, an agent that cannot be used. */
  debug?: (message: string) => void;
  /** Receives warnings: a host key recorded, host keys not checked strictly. */
  warn?: (message: string) => void;
  /** Compress every connection (`--compress`), as ssh_config Compression yes does for one host. */
  compress?: boolean;
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
  /** What the key exchange settled on (cipher, MAC, compression each way). */
  negotiated?: NegotiatedAlgorithms;
}

type PoolEvents = { down: [host: string, error: OffloadError] };

/**
 * One SSH connection per builder, opened on first use and shared by every job
 * on that builder: each running job gets its own channel (`nix-store --serve`
 * or a probe command), so there is no per-job handshake. The host key is
 * verified during the handshake, before authentication and before any channel.
 * A dead connection (closed, reset, or keep-alives unanswered) is dropped and
 * reported with a 'down' event; the next use connects again.
 */
export class SshPool extends EventEmitter<PoolEvents> {
  private readonly connections = new Map<string, Connection>();
  private readonly options: Required<Omit<SshPoolOptions, 'debug' | 'warn'>>;
  private readonly debug: (message: string) => void;
  private readonly warn: (message: string) => void;

  constructor(options: SshPoolOptions = {}) {
    super();
    this.options = {
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 5_000,
      keepaliveCountMax: options.keepaliveCountMax ?? 3,
      idleTimeoutMs: options.idleTimeoutMs ?? 0,
      knownHostsFiles: options.knownHostsFiles ?? defaultUserKnownHostsFiles(),
      globalKnownHostsFiles: options.globalKnownHostsFiles ?? [...DEFAULT_GLOBAL_KNOWN_HOSTS_FILES],
      compress: options.compress ?? false,
    };
    this.debug = options.debug ?? (() => undefined);
    this.warn = options.warn ?? (() => undefined);
  }

  /** Connects (or waits for the connection in progress); rejects with a classified SSH error. */
  async connect(machine: Machine): Promise<void> {
    await this.connection(machine).ready;
  }

  isConnected(host: string): boolean {
    return this.connections.has(host);
  }

  /** The algorithms of the host's live connection, once its key exchange is done. */
  negotiated(host: string): NegotiatedAlgorithms | undefined {
    return this.connections.get(host)?.negotiated;
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
    return probeReply(channel, () => ({ code, ...(signal ? { signal } : {}) }), {
      host: machine.hostName,
      command,
      maxReplyBytes,
      ...(timeoutMs !== undefined ? { msLeft: Math.max(0, timeoutMs - (performance.now() - started)), timeoutMs } : {}),
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
    // The machines file's own sshKey is what the user asked for: a bad one is
    // bad input, refused before any connection, not an identity to skip.
    if (machine.sshKey !== undefined) await checkKeyFile(machine.sshKey, machine.hostName);
    const [auth, policy] = await Promise.all([clientAuth(machine, { debug: this.debug }), hostKeyPolicy(machine, this.options.knownHostsFiles, this.options.globalKnownHostsFiles)]);
    const { client } = connection;
    if (connection.closing) throw new ConnectionLostError(machine.hostName, 'the pool was closed while connecting');
    if (machine.strictHostKeyChecking === 'no' && !policy.pinned) {
      this.warn(`${machine.hostName}: StrictHostKeyChecking no: a host key nothing knows is accepted without a check; use accept-new or pin publicHostKey`);
    }
    let refusedKey: OffloadError | undefined;
    const config: ConnectConfig = {
      host: policy.address,
      port: policy.port,
      username: auth.user,
      authHandler: auth.methods,
      readyTimeout: this.options.connectTimeoutMs,
      keepaliveInterval: this.options.keepaliveIntervalMs,
      keepaliveCountMax: this.options.keepaliveCountMax,
      algorithms: {
        serverHostKey: hostKeyAlgorithms(expectedKeyTypes(policy)) as NonNullable<ConnectConfig['algorithms']>['serverHostKey'],
        compress: compressionAlgorithms(this.options.compress || machine.compression === true),
      },
      hostVerifier: (key: Buffer, verify: (accepted: boolean) => void) => {
        const decision = checkHostKey(key, policy);
        if (!decision.accepted) refusedKey = decision.error;
        if (decision.accepted && decision.via === 'accepted unknown') {
          void this.recordNewKey(machine, key).then(() => verify(true));
          return;
        }
        verify(decision.accepted);
      },
    };
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      let lastError: Error | undefined;
      client.on('handshake', (negotiated) => {
        connection.negotiated = negotiated;
      });
      client.on('ready', () => {
        ready = true;
        connection.established = true;
        resolve();
      });
      client.on('error', (error: Error & { level?: string }) => {
        // ssh2 reports an agent that fails mid-login this way and goes on with the next method.
        if (error.level === 'agent') return this.debug(`${machine.hostName}: ssh-agent: ${error.message}`);
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

  /**
   * A key nothing knew, accepted under StrictHostKeyChecking accept-new or no:
   * recorded in the first user known_hosts file, as ssh does, so a different
   * key next time is refused. A file that cannot be written is a warning, not
   * a failed connection (ssh goes on too).
   */
  private async recordNewKey(machine: Machine, key: Buffer): Promise<void> {
    const file = userKnownHostsFilesFor(machine, this.options.knownHostsFiles)[0];
    const name = knownHostsNamesFor(machine)[0]!;
    if (!file) return;
    const print = `${keyTypeOfBlob(key) ?? 'unknown'} ${sha256Fingerprint(key)}`;
    try {
      await recordHostKey(file, name, key, { hash: machine.hashKnownHosts ?? false });
      this.warn(`${machine.hostName}: permanently added ${name} (${print}) to the list of known hosts in ${file}`);
    } catch (error) {
      this.warn(`${machine.hostName}: could not add ${name} (${print}) to ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
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

/**
 * OpenSSH's offer (kex.c compression_alg_list): with compression on, zlib
 * first; off, `none` first. The client's order decides, so a server that
 * allows zlib compresses only when asked to. On a fast link zlib costs far
 * more CPU than it saves (see the transfer benchmark), hence off by default.
 */
export function compressionAlgorithms(on: boolean): ('none' | 'zlib@openssh.com' | 'zlib')[] {
  return on ? ['zlib@openssh.com', 'zlib', 'none'] : ['none', 'zlib@openssh.com', 'zlib'];
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
