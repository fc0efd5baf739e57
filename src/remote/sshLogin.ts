import type { Duplex } from 'node:stream';
import type { Client, ConnectConfig, NegotiatedAlgorithms } from 'ssh2';
import type { SshEndpoint } from '../config/machine.js';
import { watchCompression, type CompressionLimits, type CompressionSwitch } from './adaptiveCompression.js';
import { compressionAlgorithms } from './compressionRule.js';
import type { OffloadError } from '../errors/offloadError.js';
import { hostKeyPolicy, knownHostsNamesFor, userKnownHostsFilesFor } from './expectedHostKey.js';
import { checkHostKey, expectedKeyTypes, hostKeyAlgorithms, keyTypeOfBlob, sha256Fingerprint, type HostKeyPolicy } from './hostKey.js';
import { clientAuth, type ClientAuth } from './identities.js';
import { describeProxyEnd, type ProxyProcess } from './proxyCommand.js';
import { recordHostKey } from './recordHostKey.js';
import { ConnectionLostError, connectFailure, ProxyCommandError } from './sshErrors.js';

/** What one login needs besides the endpoint: the run's defaults resolved for it, and hooks into its connection. */
export interface LoginSettings {
  /** Connect, handshake and login within this. */
  connectTimeoutMs: number;
  keepalive: { intervalMs: number; countMax: number };
  /** Offer zlib first even without the endpoint's Compression yes (`--compress`). */
  compress: boolean;
  /** known_hosts files for an endpoint without UserKnownHostsFile / GlobalKnownHostsFile. */
  knownHostsFiles: string[];
  globalKnownHostsFiles: string[];
  debug: (message: string) => void;
  warn: (message: string) => void;
  /** The pool was closed meanwhile: give up. */
  closing: () => boolean;
  /** The ProxyCommand carrying `sock`: its exit explains a failed login. */
  proxyProcess?: ProxyProcess;
  onHandshake?: (negotiated: NegotiatedAlgorithms) => void;
  /** Compression asked for (`compress` or the endpoint's Compression yes) is kept only where it pays, from login on (adaptiveCompression.ts). */
  compressionWatch?: { limits: CompressionLimits; onSwitch: (change: CompressionSwitch) => void };
  onClose: (error: Error | undefined) => void;
  /** What the login reads before it connects, started earlier (SshPool.prepare); else read here. */
  prepared?: Promise<LoginPreparation>;
}

/** What a login reads before it connects: the identities to offer (with ssh-agent's keys) and the host key policy (known_hosts). */
export interface LoginPreparation {
  auth: ClientAuth;
  policy: HostKeyPolicy;
}

/**
 * Reads what logging in to `endpoint` needs. Started as soon as the
 * machines are known, these reads (a few files, the agent's socket) finish
 * while the rest of a start goes on, so the login can connect in the tick
 * its route opens, instead of waiting for their completions behind that
 * work (the local store's process, 20-30 ms of the thread; measured).
 */
export async function prepareLogin(endpoint: SshEndpoint, label: string, settings: Pick<LoginSettings, 'debug' | 'knownHostsFiles' | 'globalKnownHostsFiles'>): Promise<LoginPreparation> {
  const policy = hostKeyPolicy(endpoint, settings.knownHostsFiles, settings.globalKnownHostsFiles, label);
  return { auth: await clientAuth(endpoint, { debug: settings.debug }), policy };
}

/**
 * Handshake, host key check and login on `client`, over `sock`, the
 * stream its route opened (remote/sshRoute.ts); a failure before the
 * handshake destroys it. Resolves with that stream: closing waits for
 * our side of it to finish (remote/sshPool.ts closeConnection), which ssh2
 * has no public way to say. `onClose` hears of the connection ending after
 * login.
 */
export async function sshLogin(endpoint: SshEndpoint, label: string, client: Client, sock: Duplex, settings: LoginSettings): Promise<Duplex> {
  const { debug, warn } = settings;
  // The route is open already (a TCP connection may still be connecting): an error it has before ssh2
  // listens, such as a refused connection while the keys are read, is kept for the failure below.
  let routeError: Error | undefined;
  const onRouteError = (error: Error) => (routeError ??= error);
  sock.on('error', onRouteError);
  let auth: ClientAuth;
  let policy: HostKeyPolicy;
  try {
    ({ auth, policy } = await (settings.prepared ?? prepareLogin(endpoint, label, settings)));
    if (settings.closing()) throw new ConnectionLostError(label, 'the pool was closed while connecting');
  } catch (error) {
    sock.destroy();
    throw error;
  }
  if (endpoint.strictHostKeyChecking === 'no' && !policy.pinned) {
    warn(`${label}: StrictHostKeyChecking no: a host key nothing knows is accepted without a check; use accept-new or pin publicHostKey`);
  }
  const timeoutMs = settings.connectTimeoutMs;
  const keepalive = settings.keepalive;
  let refusedKey: OffloadError | undefined;
  const config: ConnectConfig = {
    host: policy.address,
    port: policy.port,
    username: auth.user,
    authHandler: auth.methods,
    readyTimeout: timeoutMs,
    keepaliveInterval: keepalive.intervalMs,
    keepaliveCountMax: keepalive.countMax,
    algorithms: {
      serverHostKey: hostKeyAlgorithms(expectedKeyTypes(policy)) as NonNullable<ConnectConfig['algorithms']>['serverHostKey'],
      compress: compressionAlgorithms(settings.compress || endpoint.compression === true),
    },
    hostVerifier: (key: Buffer, verify: (accepted: boolean) => void) => {
      const decision = checkHostKey(key, policy);
      if (!decision.accepted) refusedKey = decision.error;
      if (decision.accepted && decision.via === 'accepted unknown') {
        void recordNewKey(endpoint, label, key, settings).then(() => verify(true));
        return;
      }
      verify(decision.accepted);
    },
  };
  const proxyProcess = settings.proxyProcess;
  const failure = async (error: Error | undefined): Promise<OffloadError> => {
    if (refusedKey) return refusedKey;
    if (settings.closing()) return new ConnectionLostError(label, 'the pool was closed while connecting');
    if (proxyProcess && endpoint.proxy && 'command' in endpoint.proxy) {
      // The command's own exit says more than "connection lost before handshake"; it follows the closed pipe closely.
      const end = await Promise.race([proxyProcess.ended, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 1_000).unref())]);
      if (end !== undefined) return new ProxyCommandError(label, endpoint.proxy.command, describeProxyEnd(end), { cause: error });
    }
    return connectFailure(error, label, policy.address, policy.port, auth, timeoutMs);
  };
  await new Promise<void>((resolve, reject) => {
    let ready = false;
    let lastError: Error | undefined;
    let negotiated: NegotiatedAlgorithms | undefined;
    client.on('handshake', (algorithms) => {
      negotiated = algorithms;
      settings.onHandshake?.(algorithms);
    });
    client.on('ready', () => {
      ready = true;
      const watch = settings.compressionWatch;
      if (watch && negotiated && (settings.compress || endpoint.compression === true)) {
        watchCompression(client, negotiated, watch.limits, watch.onSwitch);
      }
      resolve();
    });
    client.on('error', (error: Error & { level?: string }) => {
      // ssh2 reports an agent that fails mid-login this way and goes on with the next method.
      if (error.level === 'agent') return debug(`${label}: ssh-agent: ${error.message}`);
      lastError = error;
      if (!ready) void failure(error).then(reject);
    });
    client.on('close', () => {
      if (!ready) {
        void failure(lastError).then(reject);
        return;
      }
      settings.onClose(lastError);
    });
    sock.off('error', onRouteError);
    if (routeError) {
      sock.destroy();
      void failure(routeError).then(reject);
      return;
    }
    // A socket still connecting is one ssh2 waits for (its 'connect'), within readyTimeout as for its own.
    client.connect({ ...config, sock });
  });
  return sock;
}

/**
 * Sends the disconnect on `client` and destroys `sock`, the stream sshLogin
 * returned, once our end of it has left: not waiting for the peer to close
 * its side took 18-29 ms off closing three builders (measured), and a hung
 * peer never closes it. The kernel still delivers what was written; sshd
 * ends the sessions as it would after `ssh` was killed. ssh2's
 * Client.destroy() does nothing to a socket it has ended, hence the stream.
 * Without a stream the login never finished: there is nobody to tell.
 */
export function sshLogout(client: Client, sock: Duplex | undefined): void {
  if (sock === undefined) {
    client.destroy();
    return;
  }
  client.end();
  if (sock.writableFinished) sock.destroy();
  else sock.once('finish', () => sock.destroy());
}

/**
 * A key nothing knew, accepted under StrictHostKeyChecking accept-new or no:
 * recorded in the first user known_hosts file, as ssh does, so a different
 * key next time is refused. A file that cannot be written is a warning, not
 * a failed connection (ssh goes on too).
 */
async function recordNewKey(endpoint: SshEndpoint, label: string, key: Buffer, { knownHostsFiles, warn }: LoginSettings): Promise<void> {
  const file = userKnownHostsFilesFor(endpoint, knownHostsFiles)[0];
  const name = knownHostsNamesFor(endpoint)[0]!;
  if (!file) return;
  const print = `${keyTypeOfBlob(key) ?? 'unknown'} ${sha256Fingerprint(key)}`;
  try {
    await recordHostKey(file, name, key, { hash: endpoint.hashKnownHosts ?? false });
    warn(`${label}: permanently added ${name} (${print}) to the list of known hosts in ${file}`);
  } catch (error) {
    warn(`${label}: could not add ${name} (${print}) to ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}
