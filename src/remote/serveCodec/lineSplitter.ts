/** A partial line longer than this is handed on anyway: a builder printing without newlines must not grow memory. */
const MAX_LINE_BYTES = 64 * 1024;

/**
 * Turns a byte stream (a server's stderr) into lines. Lines are split on
 * `\n`, a trailing `\r` is dropped, and bytes are decoded as UTF-8 only once
 * a line is whole, so a multi-byte character split across chunks survives.
 */
export class LineSplitter {
  private partial: Buffer[] = [];
  private partialSize = 0;

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (let newline = chunk.indexOf(0x0a); newline !== -1; newline = chunk.indexOf(0x0a, start)) {
      this.append(chunk.subarray(start, newline));
      this.emit();
      start = newline + 1;
    }
    this.append(chunk.subarray(start));
    if (this.partialSize >= MAX_LINE_BYTES) this.emit();
  }

  /** Hands on a last line that had no newline. */
  end(): void {
    if (this.partialSize > 0) this.emit();
  }

  private append(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.partial.push(bytes);
    this.partialSize += bytes.length;
  }

  private emit(): void {
    let line = Buffer.concat(this.partial, this.partialSize).toString('utf8');
    this.partial = [];
    this.partialSize = 0;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    this.onLine(line);
  }
}
