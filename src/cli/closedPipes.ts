const guarded = new WeakSet<NodeJS.WritableStream>();

/**
 * A reader that stops early (`offload --help | head -1`) closes our end of
 * the pipe, and Node reports the next write as an EPIPE 'error' event that,
 * unhandled, ends the process with a stack trace. The reader did not want
 * the rest, so it is dropped: later writes fail quietly, and the command runs
 * to its end and exits with its own code (a build still finishes and records
 * its results).
 */
export function dropOutputForClosedPipes(...streams: NodeJS.WritableStream[]): void {
  for (const stream of streams) {
    if (guarded.has(stream)) continue;
    guarded.add(stream);
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
    });
  }
}
