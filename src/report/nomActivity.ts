import { stripColours } from '../remote/terminalEscapes.js';
import type { RunEvent } from '../run/runEvents.js';
import { LOCAL_HOST, TRANSFER_LANE } from '../schedule/types.js';
import type { InternalJsonLogger } from './internalJson.js';

/** What a fetch or copy job moves, for the activities nom shows as downloads. */
export interface NomTransfer {
  id: string;
  transfer?: { paths: readonly string[]; from: string };
}

/**
 * Turns run events into Nix's internal-json activities (for
 * `offload build --log-format internal-json |& nom --json`): a build
 * activity per attempt, its log lines as results, a failure as Nix's
 * `error: builder for '…' failed` message with the log tail, as nom expects.
 */
export class NomActivity {
  private readonly activities = new Map<string, number>();
  /** Fetch and copy jobs: one substitution or copy activity per path. */
  private readonly transferActivities = new Map<string, number[]>();
  private readonly transfers = new Map<string, { paths: readonly string[]; from: string }>();
  private readonly tails = new Map<string, string[]>();

  constructor(
    private readonly out: InternalJsonLogger,
    private readonly tailSize = 10,
  ) {}

  /** The run's fetch and copy jobs, so their starts become downloads rather than builds. */
  know(jobs: readonly NomTransfer[]): void {
    for (const job of jobs) if (job.transfer) this.transfers.set(job.id, job.transfer);
  }

  apply(event: RunEvent): void {
    switch (event.type) {
      case 'jobStarted':
        this.stop(event.jobId);
        if (event.action === 'fetch' || event.action === 'copy') {
          this.startTransfer(event.jobId, event.action, event.host);
          break;
        }
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
    this.transferActivities.clear();
  }

  /** As Nix shows it: each fetched path a substitution from the cache, each copied path a copy from the builder. */
  private startTransfer(jobId: string, action: 'fetch' | 'copy', host: string): void {
    const transfer = this.transfers.get(jobId);
    if (!transfer) return;
    const to = host === TRANSFER_LANE || host === LOCAL_HOST ? 'local' : `ssh://${host}`;
    const ids = transfer.paths.map((path) => (action === 'fetch' ? this.out.startSubstitute(path, transfer.from, to) : this.out.startCopy(path, `ssh://${transfer.from}`, to)));
    this.transferActivities.set(jobId, ids);
  }

  private stop(jobId: string): void {
    for (const id of this.transferActivities.get(jobId) ?? []) this.out.stopBuild(id);
    this.transferActivities.delete(jobId);
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
