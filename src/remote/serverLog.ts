import type { Readable } from 'node:stream';
import { LineSplitter } from './serveCodec/lineSplitter.js';
import { filterAnsiEscapes, stripColours } from './terminalEscapes.js';

const RECENT_LINES = 20;

/**
 * What `nix-store --serve` prints on stderr: build logs and Nix's own
 * messages, line by line, to every listener, with the last lines kept for
 * the error message when the connection dies. Every escape sequence but
 * colours is dropped here, before any listener sees a line.
 */
export class ServerLog {
  private readonly listeners = new Set<(line: string) => void>();
  private readonly recent: string[] = [];
  private readonly finished: Promise<void>;

  constructor(stderr: Readable) {
    const lines = new LineSplitter((line) => this.line(filterAnsiEscapes(line, { keepColours: true })));
    stderr.on('data', (chunk: Buffer | string) => lines.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)));
    this.finished = new Promise((resolve) => {
      stderr.once('end', () => {
        lines.end();
        resolve();
      });
      stderr.once('close', () => resolve());
    });
    stderr.on('error', () => undefined);
  }

  /** Returns the unsubscribe function. */
  listen(listener: (line: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  recentLines(): string[] {
    return [...this.recent];
  }

  /**
   * Resolves once stderr has ended, or after `timeoutMs`. A server that
   * dies writes its last words to stderr just before its stdout closes,
   * but the two pipes are read independently: waiting here lets the error
   * message carry them.
   */
  async ended(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    try {
      await Promise.race([this.finished, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Nix's last `error: …` line, without the prefix: why the server gave up. */
  lastError(): string | undefined {
    const plain = this.recent.map(stripColours);
    return [...plain].reverse().find((l) => l.startsWith('error: '))?.slice('error: '.length).trim();
  }

  private line(line: string): void {
    this.recent.push(line);
    if (this.recent.length > RECENT_LINES) this.recent.shift();
    for (const listener of this.listeners) listener(line);
  }
}
