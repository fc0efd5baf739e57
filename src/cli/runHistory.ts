import type { BuildHistory } from '../history/buildHistory.js';
import type { RunEventListener } from '../run/runEvents.js';

export { addHistoryOptions, type StateOptions as HistoryOptions } from './sharedState.js';

export interface RecordedJob {
  name: string;
  system: string;
}

/**
 * Records every finished build (built or failed, not interrupted or sent
 * back to the queue) with the speedFactor of the host that ran it. A history
 * that stops accepting writes is reported once; the build goes on.
 */
export function historyRecorder(
  history: BuildHistory,
  jobs: ReadonlyMap<string, RecordedJob>,
  speedOf: (host: string) => number,
  warn: (message: string) => void,
  clock: () => Date = () => new Date(),
): RunEventListener {
  let broken = false;
  const fail = (error: unknown) => {
    if (broken) return;
    // Disk full, locked past the busy timeout, the server gone for good: the build goes on.
    broken = true;
    warn(`${error instanceof Error ? error.message : String(error)}; nothing more of this run is recorded in ${history.location}`);
  };
  return (event) => {
    if (broken || event.type !== 'jobFinished') return;
    if ((event.status === 'fetched' || event.status === 'copied') && event.from !== undefined && event.bytes !== undefined) {
      try {
        history.recordTransfer({ source: event.from, bytes: event.bytes, seconds: event.seconds, finishedAt: clock() }).catch(fail);
      } catch (error) {
        fail(error);
      }
      return;
    }
    // A copy or fetch that failed says nothing about how long the build takes.
    if ((event.status !== 'built' && event.status !== 'failed') || (event.action !== undefined && event.action !== 'build')) return;
    const job = jobs.get(event.jobId);
    if (!job) return;
    try {
      history
        .record([
          {
            name: job.name,
            system: job.system,
            host: event.host,
            speedFactor: speedOf(event.host),
            // The build alone: copying inputs in and outputs back depends on where it ran, not on the derivation.
            seconds: event.buildSeconds ?? event.seconds,
            finishedAt: clock(),
            drvPath: event.jobId,
            status: event.status,
          },
        ])
        .catch(fail);
    } catch (error) {
      fail(error);
    }
  };
}
