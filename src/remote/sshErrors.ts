import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * Why a builder cannot be used. All of them make the host unusable for the run
 * (exit code hostsUnusable if no host is left), and each message names the
 * host and what was tried so the user can act without a debug log.
 */

const where = (address: string, port: number) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

/** The host offered a key other than the pinned or known one: refuse, it may be an impostor. */
export class HostKeyMismatchError extends OffloadError {
  constructor(
    readonly host: string,
    readonly address: string,
    readonly port: number,
    readonly offeredFingerprint: string,
    readonly expectedFingerprints: string[],
    /** Where the expected keys come from, e.g. `the machines file (publicHostKey)`. */
    readonly expectedSource: string,
  ) {
    super(
      `host key of ${host} (${where(address, port)}) does not match: it offered ${offeredFingerprint} but ` +
        `${expectedSource} expects ${expectedFingerprints.join(' or ')}; if the host was reinstalled update ${expectedSource}, ` +
        'otherwise someone may be intercepting the connection',
      ExitCode.hostsUnusable,
    );
  }
}

/** The host's key is neither pinned nor in known_hosts, and unknown keys are not accepted. */
export class UnknownHostKeyError extends OffloadError {
  constructor(
    readonly host: string,
    readonly address: string,
    readonly port: number,
    readonly keyType: string,
    readonly offeredFingerprint: string,
    /** The machines-file `publicHostKey` value that would pin the offered key. */
    readonly publicHostKey: string,
    readonly knownHostsFiles: string[],
  ) {
    const keyscanType = keyscanTypeOf(keyType);
    const portFlag = port === 22 ? '' : `-p ${port} `;
    super(
      `host key of ${host} (${where(address, port)}) is not known: it offered ${keyType} ${offeredFingerprint}, ` +
        `which is neither pinned in the machines file nor listed in ${knownHostsFiles.join(', ') || 'any known_hosts file'}; ` +
        `if that fingerprint is the host's, pin it with "publicHostKey": "${publicHostKey}" ` +
        `or run: ssh-keyscan ${portFlag}-t ${keyscanType} ${address} >> ~/.ssh/known_hosts`,
      ExitCode.hostsUnusable,
    );
  }
}

function keyscanTypeOf(keyType: string): string {
  if (keyType === 'ssh-ed25519') return 'ed25519';
  if (keyType === 'ssh-rsa') return 'rsa';
  if (keyType.startsWith('ecdsa-')) return 'ecdsa';
  if (keyType === 'ssh-dss') return 'dsa';
  return keyType;
}

/** TCP could not reach sshd: refused, name unknown, or no answer in time. */
export class HostUnreachableError extends OffloadError {
  constructor(
    readonly host: string,
    readonly address: string,
    readonly port: number,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot reach ${host} at ${where(address, port)}: ${reason}`, ExitCode.hostsUnusable, options);
  }
}

/** sshd refused the keys (or the user); the message says what was offered and what was skipped and why. */
export class AuthenticationError extends OffloadError {
  constructor(
    readonly host: string,
    readonly user: string,
    /** What was offered, in order (`ssh-agent key …`, `key file …`). */
    readonly offered: string[],
    /** Identity files not offered, each with why. */
    readonly skipped: string[],
    options?: { cause?: unknown },
  ) {
    const tried = offered.length > 0 ? `offered ${offered.join(', ')}` : 'had no key to offer (no usable identity file, no key in ssh-agent)';
    const skippedText = skipped.length > 0 ? `; skipped ${skipped.join(', ')}` : '';
    const hint = offered.length > 0 ? '' : '; set sshKey in the machines file or IdentityFile in ssh_config, or load a key into ssh-agent (SSH_AUTH_SOCK)';
    super(`${host} refused login as ${user}: ${tried}${skippedText}${hint}`, ExitCode.hostsUnusable, options);
  }
}

const SOCKET_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused (no sshd listening on that port)',
  ENOTFOUND: 'unknown host name',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'TCP connect timed out',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network unreachable',
  ECONNRESET: 'connection reset during the SSH handshake',
};

/** Why a new connection did not come up, from ssh2's error (undefined: closed without one). */
export function connectFailure(
  error: (Error & { level?: string; code?: string }) | undefined,
  host: string,
  address: string,
  port: number,
  auth: { user: string; offered: string[]; skipped: string[] },
  timeoutMs: number,
): OffloadError {
  const options = error ? { cause: error } : undefined;
  if (error?.level === 'client-authentication') return new AuthenticationError(host, auth.user, auth.offered, auth.skipped, options);
  if (error?.level === 'client-timeout') {
    return new HostUnreachableError(host, address, port, `no SSH handshake within ${timeoutMs / 1000} s`, options);
  }
  const socketReason = error?.code ? SOCKET_REASONS[error.code] : undefined;
  const reason = socketReason ?? (error ? `SSH handshake failed: ${error.message}` : 'connection closed during the SSH handshake');
  return new HostUnreachableError(host, address, port, reason, options);
}

/** An established connection died: keep-alive unanswered, reset, or closed by the host. */
export class ConnectionLostError extends OffloadError {
  /** Keep-alives went unanswered: the host is hung, not merely disconnected. */
  readonly hung: boolean;
  constructor(
    readonly host: string,
    readonly reason: string,
    options?: { cause?: unknown; hung?: boolean },
  ) {
    super(`connection to ${host} lost: ${reason}`, ExitCode.hostsUnusable, options);
    this.hung = options?.hung ?? false;
  }
}

/** The host refused a new channel on a working connection, usually sshd's MaxSessions limit. */
export class ChannelOpenError extends OffloadError {
  constructor(
    readonly host: string,
    readonly openChannels: number,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(
      `${host} refused a new SSH channel with ${openChannels} already open (${reason}); ` +
        "raise MaxSessions in the builder's sshd_config (OpenSSH's default is 10) or lower its maxJobs",
      ExitCode.hostsUnusable,
      options,
    );
  }
}

/** A probe command answered with more than a probe's worth of output; the rest was not read. */
export class ProbeReplyTooLargeError extends OffloadError {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly stream: 'stdout' | 'stderr',
    readonly limitBytes: number,
  ) {
    super(
      `${host} sent more than ${Math.round(limitBytes / 1024)} KiB on ${stream} in answer to "${command}"; offload stopped reading it`,
      ExitCode.hostsUnusable,
    );
  }
}

/** A probe command gave no complete answer in time (a hung builder, or a command stuck on its filesystem); its channel was closed. */
export class ProbeTimeoutError extends OffloadError {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super(`${host} gave no complete answer to "${command}" within ${timeoutMs / 1000} s`, ExitCode.hostsUnusable);
  }
}

/** A jump host (ProxyJump) on the way to a builder could not be used; its own error says why. */
export class JumpHostError extends OffloadError {
  constructor(
    readonly host: string,
    /** The jump host as named in ProxyJump. */
    readonly jumpHost: string,
    /** Why the jump host could not be used (connecting to it, or it opening the way on). */
    readonly hopError: OffloadError,
  ) {
    super(`cannot reach ${host} through jump host ${jumpHost}: ${hopError.message}`, ExitCode.hostsUnusable, { cause: hopError });
  }
}

/** A ProxyCommand could not start, or ended before the SSH login was done. */
export class ProxyCommandError extends OffloadError {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot reach ${host} through ProxyCommand "${command}": ${reason}`, ExitCode.hostsUnusable, options);
  }
}
