import { describeCompressionSwitch } from '../remote/adaptiveCompression.js';
import type { RunEvent } from '../run/runEvents.js';
import { formatBytes, formatRate } from './byteSize.js';
import { formatDuration } from './duration.js';
import type { TransferState } from './transferProgress.js';

/**
 * One plain line per run event, for stderr when it is not a terminal (CI
 * logs, `2> file`): `[12.3s] ruby: started hello-2.12.1 (est 1m30s)`.
 * Build log lines are not events to narrate: they have their own prefix.
 */

/** Expected seconds of a job on a host, when known. */
export type EstimateOn = (jobId: string, host: string) => number | undefined;

export function eventText(event: RunEvent, estimateOn: EstimateOn = () => undefined): string | undefined {
  switch (event.type) {
    case 'jobStarted': {
      const est = estimateOn(event.jobId, event.host);
      const notes = [event.attempt > 1 ? `attempt ${event.attempt}` : '', est !== undefined ? `est ${formatDuration(est)}` : ''].filter((n) => n !== '');
      const verb = event.action === 'fetch' ? 'fetching' : event.action === 'copy' ? 'copying' : 'started';
      return `${event.host}: ${verb} ${event.name}${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`;
    }
    case 'jobFinished':
      switch (event.status) {
        case 'built':
          return `${event.host}: ${event.name} built in ${shortSeconds(event.seconds)}`;
        case 'fetched':
          return `${event.host}: ${event.name} fetched${event.bytes !== undefined ? ` (${formatBytes(event.bytes)})` : ''} from ${event.from ?? 'a cache'} in ${shortSeconds(event.seconds)}`;
        case 'copied':
          return `${event.host}: ${event.name} copied${event.bytes !== undefined && event.bytes > 0 ? ` (${formatBytes(event.bytes)})` : ''} from ${event.from ?? 'a builder'} in ${shortSeconds(event.seconds)}`;
        case 'fell-back':
          return `${event.host}: ${event.name} could not be fetched from ${event.from ?? 'a cache'}; building it instead`;
        case 'failed':
          if (event.action === 'copy') return `${event.host}: ${event.name} could not be copied from ${event.from ?? 'a builder'}: ${event.error ?? 'unknown error'}`;
          if (event.action === 'fetch') return `${event.host}: ${event.name} could not be fetched from ${event.from ?? 'a cache'}: ${event.error ?? 'unknown error'}`;
          return `${event.host}: ${event.name} failed: ${event.error ?? 'unknown error'}`;
        case 'interrupted':
          return `${event.host}: ${event.name} interrupted after ${shortSeconds(event.seconds)}`;
        case 'requeued':
          if (event.action === 'fetch') return `${event.host}: ${event.name} could not be fetched there (${event.error ?? 'not in its caches'}); fetching it here`;
          return `${event.host}: ${event.name} goes back to the queue: ${event.error ?? 'transient failure'}`;
      }
      return undefined;
    case 'jobSkipped':
      return `${event.name} skipped: ${event.reason}`;
    case 'hostDown':
      return `${event.host}: down: ${event.reason}`;
    case 'hostBack':
      return `${event.host}: back in rotation`;
    case 'hostPressure':
      if (!event.changed) return undefined;
      return event.reasons.length > 0 ? `${event.host}: loaded (${event.reasons.join(', ')}); no new jobs until it recovers` : `${event.host}: no longer loaded; takes jobs again`;
    case 'linkCompression':
      return `${event.host}: ${describeCompressionSwitch(event)}`;
    case 'buildLog':
      return undefined;
    case 'transferStarted':
      if (event.bytes < NARRATED_TRANSFER_BYTES) return undefined;
      return `${event.from} -> ${event.to}: copying ${event.paths} path${event.paths === 1 ? '' : 's'} (${formatBytes(event.bytes)})`;
    case 'transferProgress':
      return undefined;
    case 'transferFinished':
      if (event.error !== undefined) return `${event.from} -> ${event.to}: copy failed after ${formatBytes(event.bytes)}: ${event.error}`;
      if (event.bytes < NARRATED_TRANSFER_BYTES) return undefined;
      return `${event.from} -> ${event.to}: copied ${formatBytes(event.bytes)} in ${shortSeconds(event.seconds)}${event.seconds > 0 ? ` (${formatRate(event.bytes / event.seconds)})` : ''}`;
  }
}

/** Smaller transfers go unnarrated: a job's inputs would flood the log (they show in --json-events). */
export const NARRATED_TRANSFER_BYTES = 64 * 1024 * 1024;

/** `left -> local: 412.00 MiB of 1.00 GiB, 85.10 MiB/s, ETA 7s`: a long copy, every few seconds, where no live view shows it. */
export function transferProgressText(t: TransferState): string {
  const pace = t.rate !== undefined ? `, ${formatRate(t.rate)}, ETA ${formatDuration(t.eta ?? 0)}` : '';
  return `${t.from} -> ${t.to}: ${formatBytes(t.bytes)} of ${formatBytes(t.total)}${pace}`;
}

/** `[12.3s] ` — seconds since the run started, one decimal. */
export function timePrefix(seconds: number): string {
  return `[${Math.max(0, seconds).toFixed(1)}s] `;
}

export function eventLine(event: RunEvent, estimateOn?: EstimateOn): string | undefined {
  const text = eventText(event, estimateOn);
  return text === undefined ? undefined : `${timePrefix(event.time)}${text}`;
}

/** Short builds keep a decimal (`1.6s`); longer ones read like the plan (`2m05s`). */
export function shortSeconds(seconds: number): string {
  return seconds < 10 ? `${Math.max(0, seconds).toFixed(1)}s` : formatDuration(seconds);
}
