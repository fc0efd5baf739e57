import type { Machine } from '../config/machine.js';
import type { CompressionSwitch } from '../remote/adaptiveCompression.js';
import type { OffloadError } from '../errors/offloadError.js';
import { DEFAULT_STORE_DIR } from '../storePath/storePath.js';
import { parsePressure, pressureLimits, PRESSURE_COMMAND } from '../remote/builderPressure.js';
import type * as SshPoolModule from '../remote/sshPool.js';
import type { SshPool, SshPoolOptions } from '../remote/sshPool.js';
import type { HoldingsSources } from './builderHoldings.js';
import { presenceOverSsh } from './builderPresence.js';
import { ChannelPool } from './channelPool.js';
import { serveChannelOpener } from './openChannel.js';
import { PRESSURE_INTERVAL_MS, PRESSURE_PROBE_TIMEOUT_MS, PressureGate, type PressureSample } from './pressureGate.js';

/** What a run reaches its builders through: one SSH connection each, serve channels over them, their pressure. */
export interface BuilderLinks {
  ssh: SshPool;
  channels: ChannelPool;
  pressure: PressureGate;
  /** Where the builders' holdings are asked: their disks first, then Nix about what is there. */
  holdings: HoldingsSources;
  /**
   * Logs in to every builder, once (connectBuilders); resolves with the
   * first pressure look, which the first pass waits for before it
   * dispatches. Undefined: there is no builder.
   */
  connect(): Promise<void> | undefined;
  /** connect was called. */
  readonly connected: boolean;
  /**
   * Starts each host's first serve channel (once per host) as soon as its
   * login allows: for the builders the first jobs are planned on, whose
   * `nix-store --serve` would otherwise start only when a job asks.
   */
  warm(hosts: readonly string[]): void;
  /** Logs in to a builder (or waits for the login in progress): rejects with the classified SSH error. */
  login(host: string): Promise<void>;
}

export interface BuilderLinkOptions {
  /** ssh2's module, loading since the run started (it is a tenth of what a start loads). */
  sshModule: Promise<typeof SshPoolModule>;
  ssh: SshPoolOptions;
  /** For serveChannelOpener. */
  channels: Parameters<typeof serveChannelOpener>[2];
  /** A connection was lost: the executor's, once there is one. */
  onDown: (host: string, error: OffloadError) => void;
  onSample: (host: string, sample: PressureSample, changed: boolean) => void;
  /** A compressed link stopped or resumed compressing a direction. */
  onCompression?: (host: string, change: CompressionSwitch) => void;
}

/**
 * The run's links to `machines`, made as soon as they are known; no
 * builder is contacted before `connect`.
 */
export async function linkBuilders(machines: readonly Machine[], options: BuilderLinkOptions): Promise<BuilderLinks> {
  const ssh = new (await options.sshModule).SshPool(options.ssh);
  // Keys and known_hosts are read now, while the closure is: the logins can then connect as soon as it is known.
  for (const m of machines) ssh.prepare(m);
  ssh.on('down', options.onDown);
  if (options.onCompression) ssh.on('compression', options.onCompression);
  const channels = new ChannelPool(serveChannelOpener(ssh, machines, options.channels));
  const byName = new Map(machines.map((m) => [m.hostName, m]));
  const pressure = new PressureGate({
    hosts: machines.map((m) => m.hostName),
    // Over the connection already open: a builder not connected (yet, or any more) is not probed.
    probe: async (host, timeoutMs) => {
      if (!ssh.isConnected(host)) throw new Error(`${host} is not connected`);
      const result = await ssh.exec(byName.get(host)!, PRESSURE_COMMAND, { timeoutMs });
      return parsePressure(result.stdout);
    },
    probeTimeoutMs: PRESSURE_PROBE_TIMEOUT_MS,
    limits: new Map(machines.map((m) => [m.hostName, pressureLimits(m.pressure)])),
    intervalMs: PRESSURE_INTERVAL_MS,
    onSample: options.onSample,
  });
  let firstLook: Promise<void> | undefined;
  let connected = false;
  const warmed = new Set<string>();
  const present = presenceOverSsh(ssh, machines, options.channels?.storeDir ?? DEFAULT_STORE_DIR);
  return {
    ssh,
    channels,
    pressure,
    // A builder whose nix-store is starting anyway (warm) is asked over it; the others about their disks first.
    holdings: { channels, present: (host, paths) => (warmed.has(host) ? Promise.resolve(undefined) : present(host, paths)) },
    connect() {
      if (!connected && machines.length > 0) firstLook = connectBuilders(ssh, machines, pressure);
      connected = true;
      return firstLook;
    },
    get connected() {
      return connected;
    },
    login: (host) => ssh.connect(byName.get(host)!),
    warm(hosts) {
      for (const host of hosts) {
        if (warmed.has(host) || !byName.has(host)) continue;
        warmed.add(host);
        channels.warm(host);
      }
    },
  };
}

/**
 * Reaches the builders as soon as the machines are known, before the
 * workload is: per builder the SSH login, then at once the first pressure
 * look, which the first pass waits for before it dispatches. No
 * `nix-store --serve` starts here: only the builders the first jobs are
 * planned on need one before a job asks (BuilderLinks.warm). Failures are
 * not reported here: they stay with the host's connection, for the holdings
 * query or the job that meets them.
 */
export function connectBuilders(ssh: SshPool, machines: readonly Machine[], pressure: PressureGate): Promise<void> {
  for (const m of machines) {
    // Connecting first lets the pressure probe (which never connects by itself) use the connection being made.
    ssh.connect(m).catch(() => undefined);
  }
  return pressure.look();
}
