import type { Readable } from 'node:stream';
import { LineSplitter } from './serveCodec/lineSplitter.js';
import { filterAnsiEscapes } from './terminalEscapes.js';

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

  constructor(stderr: Readable) {
    const lines = new LineSplitter((line) => this.line(filterAnsiEscapes(line, { keepColours: true })));
    stderr.on('data', (chunk: Buffer | string) => lines.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)));
    stderr.on('end', () => lines.end());
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

  private line(line: string): void {
    this.recent.push(line);
    if (this.recent.length > RECENT_LINES) this.recent.shift();
    for (const listener of this.listeners) listener(line);
  }
}
