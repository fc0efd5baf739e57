import { stripColours } from '../remote/terminalEscapes.js';
import type { RunEvent } from '../run/runEvents.js';
import type { InternalJsonLogger } from './internalJson.js';

/**
 * Turns run events into Nix's internal-json activities (for
 * `offload build --log-format internal-json |& nom --json`): a build
 * activity per attempt, its log lines as results, a failure as Nix's
 * `error: builder for '…' failed` message with the log tail, as nom expects.
 */
export class NomActivity {
  private readonly activities = new Map<string, number>();
  private readonly tails = new Map<string, string[]>();

  constructor(
    private readonly out: InternalJsonLogger,
    private readonly tailSize = 10,
  ) {}

  apply(event: RunEvent): void {
    switch (event.type) {
      case 'jobStarted':
        this.stop(event.jobId);
        this.activities.set(event.jobId, this.out.startBuild(event.jobId, event.host));
        this.tails.set(event.jobId, []);
        break;
      case 'buildLog': {
        const id = this.activities.get(event.jobId);
        if (id === undefined) break;
        // nom reads this from a pipe: colours are for terminals offload writes to itself.
        const line = stripColours(event.line);
        this.out.logLine(id, line);
        const tail = this.tails.get(event.jobId)!;
        tail.push(line);
        if (tail.length > this.tailSize) tail.shift();
        break;
      }
      case 'jobFinished':
        if (event.status === 'failed') this.out.error(failureMessage(event.jobId, event.host, event.error, this.tails.get(event.jobId) ?? []));
        this.stop(event.jobId);
        break;
      case 'jobSkipped':
      case 'hostDown':
      case 'hostBack':
        // offload's own messages about these reach nom through the logger.
        break;
    }
  }

  /** Interrupted or finished: nothing may stay "running" in nom. */
  stopAll(): void {
    this.out.stopAll();
    this.activities.clear();
  }

  private stop(jobId: string): void {
    const id = this.activities.get(jobId);
    if (id === undefined) return;
    this.out.stopBuild(id);
    this.activities.delete(jobId);
    this.tails.delete(jobId);
  }
}

/** Nix's wording, so nom files it under the derivation: `builder for '<drv>' failed …`. */
function failureMessage(drvPath: string, host: string, error: string | undefined, tail: readonly string[]): string {
  const head = `error: builder for '${drvPath}' failed on ${host}: ${error ?? 'unknown error'}`;
  if (tail.length === 0) return head;
  return [`${head};`, `       last ${tail.length} log lines:`, ...tail.map((l) => `       > ${l}`)].join('\n');
}
