/** Where messages go once a run's output exists. */
export interface OutputSink {
  warn(message: string): void;
  debug(message: string): void;
}

/**
 * Warnings and debug lines of what starts before the run's output exists
 * (the builders' logins begin while the configuration is still read): kept
 * in order and handed to the output once it is there.
 */
export class EarlyOutput {
  private sink: OutputSink | undefined;
  private readonly held: Array<{ level: 'warn' | 'debug'; message: string }> = [];

  readonly warn = (message: string): void => {
    if (this.sink) this.sink.warn(message);
    else this.held.push({ level: 'warn', message });
  };

  readonly debug = (message: string): void => {
    if (this.sink) this.sink.debug(message);
    else this.held.push({ level: 'debug', message });
  };

  attach(sink: OutputSink): void {
    this.sink = sink;
    for (const { level, message } of this.held.splice(0)) sink[level](message);
  }

  /**
   * A run that failed before it had an output (bad configuration) still
   * says what its logins did, such as a host key added to known_hosts.
   */
  flushUnattached(write: (line: string) => void = (line) => process.stderr.write(line)): void {
    if (this.sink) return;
    for (const { level, message } of this.held.splice(0)) if (level === 'warn') write(`offload: ${message}\n`);
  }
}
