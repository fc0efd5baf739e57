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

/** sshd refused the key (or the user). */
export class AuthenticationError extends OffloadError {
  constructor(
    readonly host: string,
    readonly user: string,
    readonly keyFile: string | undefined,
    options?: { cause?: unknown },
  ) {
    const key = keyFile ? `the key ${keyFile}` : 'no key (set sshKey in the machines file or IdentityFile in ssh_config)';
    super(`${host} refused login as ${user} with ${key}`, ExitCode.hostsUnusable, options);
  }
}

/** An established connection died: keep-alive unanswered, reset, or closed by the host. */
export class ConnectionLostError extends OffloadError {
  constructor(
    readonly host: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`connection to ${host} lost: ${reason}`, ExitCode.hostsUnusable, options);
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
