import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { Client, type ClientChannel } from 'ssh2';
import { checkKeyFile } from '../config/keyFile.js';
import type { SshEndpoint } from '../config/machine.js';
import { OffloadError } from '../errors/offloadError.js';
import { describeCompressionSwitch, type CompressionLimits } from './adaptiveCompression.js';
import { openedWithin } from './probeReply.js';
import { startProxyCommand, type ProxyProcess } from './proxyCommand.js';
import { sshLogin, sshLogout, type LoginSettings } from './sshLogin.js';
import { ConnectionLostError, HostUnreachableError, JumpHostError } from './sshErrors.js';

/**
 * The way to a host that ssh_config routes: behind ProxyJump, a
 * direct-tcpip channel of a connection to its jump host (itself reached the
 * same way, hop by hop); behind ProxyCommand, the command's stdin and
 * stdout. Everything on the way belongs to the host's connection and ends
 * with it (closeRoute).
 */
export interface Route {
  /** Connections to the jump hosts on the way, first hop first, each with its stream once logged in. */
  hops: { client: Client; sock?: Duplex }[];
  /** The ProxyCommand carrying the connection (of the host or of its first jump host). */
  proxyProcess?: ProxyProcess;
}

/** What a route needs of the connection it is for. */
export interface RouteContext {
  route: Route;
  /** How `hop` is logged in to: its ssh_config values, else the pool's. */
  loginSettings: (hop: SshEndpoint, extra: Pick<LoginSettings, 'compress' | 'onClose'> & Partial<LoginSettings>) => LoginSettings;
  /** For a target without its own ConnectTimeout. */
  connectTimeoutMs: number;
  /** For a jump host's own `Compression yes` link. */
  compressionLimits: CompressionLimits;
  debug: (message: string) => void;
  /** The pool was closed meanwhile: give up. */
  closing: () => boolean;
  /** A jump host went away under the logged-in connection, which must go with it. */
  hopLost: (reason: string) => void;
}

/**
 * The stream the SSH connection to `endpoint` runs over: a channel from its
 * jump host (connected first, through its own route), a ProxyCommand's
 * stdio, or a TCP connection. `label` names the endpoint in messages.
 *
 * The machines file's own sshKey is what the user asked for: a bad one is
 * bad input, refused here before any connection, not an identity to skip.
 * A direct TCP connection is opened in the same tick as the call: sshd
 * forks and greets while the rest of a start (the local store's process,
 * 20-30 ms of the thread) goes on, instead of after it (measured: the
 * build on the builder began 40-50 ms sooner).
 */
export async function openRoute(endpoint: SshEndpoint, label: string, context: RouteContext): Promise<Duplex> {
  if (endpoint.sshKey !== undefined) checkKeyFile(endpoint.sshKey, label);
  const proxy = endpoint.proxy;
  if (proxy === undefined) return connect({ host: endpoint.address || endpoint.hostName, port: endpoint.port || 22 });
  if ('command' in proxy) {
    const command = startProxyCommand(proxy.command, (line) => context.debug(`${label}: ProxyCommand: ${line}`));
    context.route.proxyProcess = command;
    return command.sock;
  }
  const hop = proxy.jump;
  const hopLabel = `jump host ${hop.hostName} of ${label}`;
  const hopClient = new Client();
  const hopLink: Route['hops'][number] = { client: hopClient };
  context.route.hops.push(hopLink);
  try {
    const hopSock = await openRoute(hop, hopLabel, context);
    hopLink.sock = await sshLogin(
      hop,
      hopLabel,
      hopClient,
      hopSock,
      context.loginSettings(hop, {
        // --compress is for the builder's link; a jump host's compresses only when its own Compression says so.
        compress: false,
        // It carries the builder's link, encrypted: its own compression shrinks nothing of that, and is
        // watched like the builder's. A switch is only logged: events name builders, not their routes.
        compressionWatch: { limits: context.compressionLimits, onSwitch: (change) => context.debug(`${hopLabel}: ${describeCompressionSwitch(change)}`) },
        onClose: (error) => {
          const reason = error?.message === 'Keepalive timeout' ? 'no answer to keep-alives' : (error?.message ?? 'closed');
          context.hopLost(`jump host ${hop.hostName} lost (${reason})`);
        },
      }),
    );
    if (context.closing()) throw new ConnectionLostError(label, 'the pool was closed while connecting');
    return await forward(hopClient, hop, endpoint, label, endpoint.connectTimeoutMs ?? context.connectTimeoutMs);
  } catch (error) {
    if (error instanceof OffloadError && !(error instanceof ConnectionLostError)) throw new JumpHostError(label, hop.hostName, error);
    throw error;
  }
}

/** A direct-tcpip channel from the jump host to `target`, as `ssh -W host:port` asks for; bounded by the target's connect timeout. */
async function forward(hopClient: Client, hop: SshEndpoint, target: SshEndpoint, label: string, timeoutMs: number): Promise<Duplex> {
  const address = target.address || target.hostName;
  const port = target.port || 22;
  const opening = new Promise<ClientChannel>((resolve, reject) =>
    hopClient.forwardOut('127.0.0.1', 0, address, port, (error, channel) => {
      if (error) reject(new HostUnreachableError(label, address, port, `jump host ${hop.hostName} could not open a connection to it: ${error.message}`, { cause: error }));
      else resolve(channel);
    }),
  );
  return openedWithin(opening, timeoutMs, () => new HostUnreachableError(label, address, port, `jump host ${hop.hostName} opened no connection to it within ${timeoutMs / 1000} s`));
}

/** The jump hosts' connections, last hop first, and the ProxyCommand: nothing of a route outlives its connection, nor waits for a jump host's answer. */
export function closeRoute(route: Route): void {
  for (const hop of [...route.hops].reverse()) sshLogout(hop.client, hop.sock);
  route.proxyProcess?.stop();
}
