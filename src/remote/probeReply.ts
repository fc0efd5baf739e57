import type { ClientChannel } from 'ssh2';
import { ConnectionLostError, ProbeReplyTooLargeError, ProbeTimeoutError } from './sshErrors.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status, or null when the command was killed by a signal. */
  code: number | null;
  signal?: string;
}

export interface ProbeLimits {
  host: string;
  command: string;
  /** Per stream: a builder that sends more is not answering a probe, and its reply is never buffered. */
  maxReplyBytes: number;
  /** The bound of the whole exchange, as the error names it, and what is left of it once the channel is open. */
  timeoutMs?: number;
  msLeft?: number;
  /** What the command reads on its stdin (then end of file); nothing by default. */
  input?: Buffer;
}

/**
 * The reply of a short command on an open channel (a `machines check` or
 * pressure probe), bounded in size and time. `exit()` reads the status the
 * caller's 'exit' listener saw; that listener must be attached as the
 * channel opens (see SshPool.exec).
 */
export function probeReply(channel: ClientChannel, exit: () => { code: number | null; signal?: string }, limits: ProbeLimits): Promise<ExecResult> {
  const { host, command, maxReplyBytes, timeoutMs } = limits;
  return new Promise((resolve, reject) => {
    let tooLarge: ProbeReplyTooLargeError | undefined;
    let timedOut: ProbeTimeoutError | undefined;
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = new ProbeTimeoutError(host, command, timeoutMs);
            channel.close();
            // A connection too hung to confirm the close must not keep the caller waiting.
            reject(timedOut);
          }, limits.msLeft ?? timeoutMs);
    const collect = (stream: 'stdout' | 'stderr') => {
      const chunks: Buffer[] = [];
      let size = 0;
      return {
        chunks,
        add: (data: Buffer) => {
          if (tooLarge) return;
          size += data.length;
          if (size > maxReplyBytes) {
            tooLarge = new ProbeReplyTooLargeError(host, command, stream, maxReplyBytes);
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
      const { code, signal } = exit();
      // sshd always reports an exit status or signal; without one the connection died.
      if (code === null && signal === undefined) {
        reject(new ConnectionLostError(host, `the connection closed while running ${command}`));
        return;
      }
      resolve({
        stdout: Buffer.concat(stdout.chunks).toString('utf8'),
        stderr: Buffer.concat(stderr.chunks).toString('utf8'),
        code,
        ...(signal ? { signal } : {}),
      });
    });
    channel.end(limits.input);
  });
}

/** The channel, or the timeout's error; a channel that opens too late is closed at once. */
export async function openedWithin(opening: Promise<ClientChannel>, timeoutMs: number, timeoutError: () => Error): Promise<ClientChannel> {
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
