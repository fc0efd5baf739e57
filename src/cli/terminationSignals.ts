import { ExitCode } from '../errors/offloadError.js';

export type TerminationSignal = 'SIGINT' | 'SIGTERM';

export interface TerminationOptions {
  /** Where a second signal ends the process; process.exit outside tests. */
  exit?: (code: number) => void;
  /** Receives the signals; `process` outside tests. */
  emitter?: Pick<NodeJS.Process, 'on' | 'off'>;
}

/**
 * SIGINT/SIGTERM end a build cleanly: the first one calls `stop` (start
 * nothing new, stop the remote builds, close the connections, print the
 * summary). Cleaning up can be slow (a hung builder, a large import), so a
 * second one exits at once with 130, as Nix does on a second Ctrl-C; the live
 * view gives the cursor back from its 'exit' handler, and the log file is
 * written synchronously, so nothing is left behind but half a summary.
 * Returns the function that stops listening.
 */
export function onTerminationSignals(
  stop: (signal: TerminationSignal) => void,
  say: (message: string) => void,
  options: TerminationOptions = {},
): () => void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const emitter = options.emitter ?? process;
  let seen = false;
  const handlers = (['SIGINT', 'SIGTERM'] as const).map((signal) => {
    const handler = () => {
      if (seen) {
        say('interrupted again; exiting now without cleaning up');
        exit(ExitCode.interrupted);
        return;
      }
      seen = true;
      say('interrupted; stopping the builds and closing connections (interrupt again to exit at once)');
      stop(signal);
    };
    emitter.on(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) emitter.off(signal, handler);
  };
}
