/**
 * A build's log as it streams in, split into lines (chunks break anywhere),
 * keeping the last lines so a failure can show its tail. The lines
 * themselves travel as `buildLog` run events.
 */
export class BuildLog {
  private partial = '';
  private readonly lastLinesKept: string[] = [];

  constructor(private readonly tailSize = 25) {}

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
    return [...this.lastLinesKept];
  }

  private line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    this.lastLinesKept.push(line);
    if (this.lastLinesKept.length > this.tailSize) this.lastLinesKept.shift();
  }
}
