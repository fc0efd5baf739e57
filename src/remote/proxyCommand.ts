import { spawn } from 'node:child_process';
import { Duplex } from 'node:stream';
import { filterAnsiEscapes } from './terminalEscapes.js';

/** The last this many bytes of a ProxyCommand's stderr are kept for the error that explains its failure. */
const STDERR_TAIL_BYTES = 2048;

export interface ProxyProcess {
  /** The command's stdout and stdin as one stream: what SSH runs over. */
  sock: Duplex;
  /** Resolves when the command has ended, with how and the tail of what it printed on stderr. */
  ended: Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error; stderr: string }>;
  /** Whether it has ended yet. */
  readonly running: boolean;
  /** SIGHUP, as ssh sends its proxy command when the connection ends. */
  stop(): void;
}

/**
 * A ProxyCommand as ssh runs it (sshconnect.c ssh_proxy_connect): `exec
 * COMMAND` through the user's shell ($SHELL, else /bin/sh), its stdin and
 * stdout carrying the SSH connection. Its stderr goes to `debug` line by
 * line, control characters removed (the command may relay a remote host's
 * text).
 */
export function startProxyCommand(command: string, debug: (line: string) => void): ProxyProcess {
  const shell = process.env.SHELL || '/bin/sh';
  const child = spawn(shell, ['-c', `exec ${command}`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let tail = '';
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    tail = (tail + text).slice(-STDERR_TAIL_BYTES);
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim() !== '') debug(filterAnsiEscapes(line, { keepColours: false }));
  });
  let running = true;
  let spawnError: Error | undefined;
  child.on('error', (error) => {
    spawnError = error;
  });
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => {
      running = false;
      const stderr = filterAnsiEscapes(tail, { keepColours: false }).trim();
      resolve({ code, signal, stderr, ...(spawnError !== undefined && { error: spawnError }) });
    });
  });
  // A write after the command exited must not crash the process: SSH then sees the stream end.
  child.stdin.on('error', () => undefined);
  const sock = Duplex.from({ readable: child.stdout, writable: child.stdin });
  sock.on('error', () => undefined);
  return {
    sock,
    ended,
    get running() {
      return running;
    },
    stop: () => {
      if (running) child.kill('SIGHUP');
    },
  };
}

/** How a ProxyCommand ended, for an error message. */
export function describeProxyEnd(end: Awaited<ProxyProcess['ended']>): string {
  const how = end.error !== undefined ? `could not start (${(end.error as NodeJS.ErrnoException).code ?? end.error.message})` : end.signal !== null ? `was killed by ${end.signal}` : `exited with code ${end.code}`;
  return `it ${how} before the SSH login was done${end.stderr !== '' ? `; it printed: ${end.stderr.replace(/\s*\n\s*/g, ' | ')}` : ''}`;
}
