/**
 * A build's log as it streams in: split into lines (chunks break anywhere),
 * each line passed on with the `[host] name> ` prefix, and the last lines
 * kept so a failure can show its tail.
 */
export class BuildLog {
  private partial = '';
  private readonly tail: string[] = [];

  constructor(
    readonly prefix: string,
    private readonly emit: (line: string) => void,
    private readonly tailSize = 25,
  ) {}

  write(chunk: string | Buffer): void {
    const text = this.partial + chunk.toString();
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }

  /** Flushes a last line that had no newline. */
  end(): void {
    if (this.partial !== '') this.line(this.partial);
    this.partial = '';
  }

  lastLines(): string[] {
    return [...this.tail];
  }

  private line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    this.tail.push(line);
    if (this.tail.length > this.tailSize) this.tail.shift();
    this.emit(`${this.prefix}${line}`);
  }
}

export function logPrefix(host: string, name: string): string {
  return `[${host}] ${name}> `;
}
