import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { Client, type ClientChannel, type NegotiatedAlgorithms } from 'ssh2';
import type { Machine, SshEndpoint } from '../config/machine.js';
import type { OffloadError } from '../errors/offloadError.js';
import { DEFAULT_COMPRESSION_LIMITS, describeCompressionSwitch, type CompressionLimits, type CompressionSwitch } from './adaptiveCompression.js';
import { DEFAULT_GLOBAL_KNOWN_HOSTS_FILES, defaultUserKnownHostsFiles } from './knownHosts.js';
import { openedWithin, probeReply, type ExecResult } from './probeReply.js';
import { prepareLogin, sshLogin, sshLogout, type LoginPreparation, type LoginSettings } from './sshLogin.js';
import { ChannelOpenError, ConnectionLostError, ProbeTimeoutError } from './sshErrors.js';
import { closeRoute, openRoute, type Route } from './sshRoute.js';
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
  /** Compress every connection (`--compress`), as ssh_config Compression yes does for one host; `compressionLimits`: when a direction stops and tries again. */
  compress?: boolean;
  compressionLimits?: CompressionLimits;
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
  /** Its jump hosts' connections and ProxyCommand, if ssh_config routes it (sshRoute.ts). */
  route: Route;
  /** The stream the connection runs over (TCP socket, jump host channel, ProxyCommand's stdio), once logged in. */
  sock?: Duplex;
  /** Why the route under an established connection went away (a jump host lost), for the 'down' event. */
  routeLost?: string;
  /** The keep-alive settings in force, for the message when they go unanswered. */
  keepalive: { intervalMs: number; countMax: number };
}

type PoolEvents = { down: [host: string, error: OffloadError]; compression: [host: string, change: CompressionSwitch] };

/**
 * One SSH connection per builder, opened on first use and shared by every job
 * on that builder: each running job gets its own channel (`nix-store --serve`
 * or a probe command), so there is no per-job handshake. The host key is
 * verified during the handshake, before authentication and before any channel.
 * A dead connection (closed, reset, or keep-alives unanswered) is dropped and
 * reported with a 'down' event; the next use connects again.
 *
 * A host behind ProxyJump or ProxyCommand is reached over the route
 * sshRoute.ts opens, which belongs to the host's connection and ends with it.
 */
export class SshPool extends EventEmitter<PoolEvents> {
  private readonly connections = new Map<string, Connection>();
  /** Reads for each host's next login, started by prepare(). */
  private readonly prepared = new Map<string, Promise<LoginPreparation>>();
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
      compressionLimits: options.compressionLimits ?? DEFAULT_COMPRESSION_LIMITS,
    };
    this.debug = options.debug ?? (() => undefined);
    this.warn = options.warn ?? (() => undefined);
  }

  /**
   * Starts reading what logging in to `machine` needs (identity files,
   * ssh-agent's keys, known_hosts) before the login is due; its next
   * connect uses what was read. Nothing is sent to the host.
   */
  prepare(machine: Machine): void {
    if (this.prepared.has(machine.hostName) || this.connections.has(machine.hostName)) return;
    const reading = prepareLogin(machine, machine.hostName, { debug: this.debug, knownHostsFiles: this.options.knownHostsFiles, globalKnownHostsFiles: this.options.globalKnownHostsFiles });
    // A failure is the login's to report, when it comes.
    reading.catch(() => undefined);
    this.prepared.set(machine.hostName, reading);
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
      packetPerWrite: true,
      close: () => channel.close(),
    };
  }

  /**
   * Runs a short probe command (e.g. `nix-store --version`) and collects its
   * output, at most `maxReplyBytes` on each of stdout and stderr: a builder
   * that sends more is not answering a probe, and its reply is never buffered.
   */
  async exec(machine: Machine, command: string, { maxReplyBytes = MAX_PROBE_REPLY_BYTES, timeoutMs, input }: { maxReplyBytes?: number; timeoutMs?: number; input?: Buffer } = {}): Promise<ExecResult> {
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
      ...(input ? { input } : {}),
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

  /** Ends every connection (no 'down' events) and waits until their sockets are closed (not for the peers to close theirs); a connect in progress is abandoned. */
  async closeAll(): Promise<void> {
    const all = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(all.map((connection) => closeConnection(connection)));
  }

  private connection(machine: Machine): Connection {
    const existing = this.connections.get(machine.hostName);
    if (existing) return existing;
    const client = new Client();
    const connection: Connection = {
      client,
      ready: Promise.resolve(),
      established: false,
      channels: 0,
      open: new Set(),
      closing: false,
      route: { hops: [] },
      keepalive: { intervalMs: this.options.keepaliveIntervalMs, countMax: this.options.keepaliveCountMax },
    };
    connection.ready = this.establish(machine, connection);
    connection.ready.catch(() => {
      if (this.connections.get(machine.hostName) === connection) this.connections.delete(machine.hostName);
    });
    this.connections.set(machine.hostName, connection);
    return connection;
  }

  private async establish(machine: Machine, connection: Connection): Promise<void> {
    // Once: a later login (after the host was lost) reads keys and known_hosts as they are then.
    const prepared = this.prepared.get(machine.hostName);
    this.prepared.delete(machine.hostName);
    const sock = await openRoute(machine, machine.hostName, {
      route: connection.route,
      loginSettings: (hop, extra) => this.loginSettings(hop, connection, extra),
      connectTimeoutMs: this.options.connectTimeoutMs,
      compressionLimits: this.options.compressionLimits,
      debug: this.debug,
      closing: () => connection.closing,
      hopLost: (reason) => {
        // The jump host went away under a working connection: the host's own connection goes with it.
        connection.routeLost ??= reason;
        connection.client.destroy();
      },
    });
    connection.sock = await sshLogin(
      machine,
      machine.hostName,
      connection.client,
      sock,
      this.loginSettings(machine, connection, {
        compress: this.options.compress,
        onHandshake: (negotiated) => (connection.negotiated = negotiated),
        compressionWatch: { limits: this.options.compressionLimits, onSwitch: (change) => this.compressionSwitched(machine.hostName, change) },
        onClose: (error) => this.lost(machine.hostName, connection, error),
        ...(prepared ? { prepared } : {}),
      }),
    );
    connection.established = true;
    connection.keepalive = this.keepaliveOf(machine);
    if (connection.closing) throw new ConnectionLostError(machine.hostName, 'the pool was closed while connecting');
    this.scheduleIdleClose(machine.hostName, connection);
  }

  private keepaliveOf(endpoint: SshEndpoint): { intervalMs: number; countMax: number } {
    return { intervalMs: endpoint.keepaliveIntervalMs ?? this.options.keepaliveIntervalMs, countMax: endpoint.keepaliveCountMax ?? this.options.keepaliveCountMax };
  }

  /** How `endpoint` is logged in to: its ssh_config values, else the pool's. */
  private loginSettings(endpoint: SshEndpoint, connection: Connection, extra: Pick<LoginSettings, 'compress' | 'onClose'> & Partial<LoginSettings>): LoginSettings {
    return {
      connectTimeoutMs: endpoint.connectTimeoutMs ?? this.options.connectTimeoutMs,
      keepalive: this.keepaliveOf(endpoint),
      knownHostsFiles: this.options.knownHostsFiles,
      globalKnownHostsFiles: this.options.globalKnownHostsFiles,
      debug: this.debug,
      warn: this.warn,
      closing: () => connection.closing,
      ...(connection.route.proxyProcess !== undefined && endpoint.proxy !== undefined && 'command' in endpoint.proxy && { proxyProcess: connection.route.proxyProcess }),
      ...extra,
    };
  }

  /** Told once: to whoever listens (a run's `linkCompression` event and its log line), else in the debug log. */
  private compressionSwitched(host: string, change: CompressionSwitch): void {
    if (this.listenerCount('compression') > 0) this.emit('compression', host, change);
    else this.debug(`${host}: ${describeCompressionSwitch(change)}`);
  }

  private lost(host: string, connection: Connection, error: Error | undefined): void {
    clearTimeout(connection.idleTimer);
    if (this.connections.get(host) === connection) this.connections.delete(host);
    if (connection.closing) return;
    const hung = error?.message === 'Keepalive timeout';
    const reason =
      connection.routeLost ??
      (hung ? `no answer to ${connection.keepalive.countMax} keep-alives ${connection.keepalive.intervalMs} ms apart` : (error?.message ?? 'closed by the host'));
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
    closeRoute(connection.route);
    await connection.ready.catch(() => undefined);
    return;
  }
  // Our side is done once the disconnect (after every channel's close) has left (sshLogout): waiting for
  // the peer to close too held every exit, and nothing it sends then is read.
  const destroy = () => (connection.sock ?? connection.client).destroy();
  const closed = new Promise<void>((resolve) => {
    connection.client.once('close', () => resolve());
    // Not even our side's end may finish when the peer stopped reading and the kernel's buffer is full.
    setTimeout(() => {
      destroy();
      resolve();
    }, 2_000).unref();
  });
  sshLogout(connection.client, connection.sock);
  await closed;
  closeRoute(connection.route);
}
