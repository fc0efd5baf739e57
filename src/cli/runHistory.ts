import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { BuildHistory, defaultHistoryPath } from '../history/buildHistory.js';
import { OffloadError } from '../errors/offloadError.js';
import type { RunEventListener } from '../run/runEvents.js';

/** `--history-file` / `--no-history`, shared by plan and build. */
export interface HistoryOptions {
  historyFile?: string;
  /** False with --no-history. */
  history?: boolean;
}

export function addHistoryOptions(cmd: Command, verb: string): Command {
  return cmd
    .option('--history-file <file>', `build history for estimates (default: ${defaultHistoryPath({ HOME: '~' })}, following $XDG_CACHE_HOME)`)
    .option('--no-history', `do not use the build history (${verb})`);
}

export function historyPath(opts: HistoryOptions): string | undefined {
  if (opts.history === false) return undefined;
  return opts.historyFile ?? defaultHistoryPath();
}

/**
 * The history for reading estimates: a file that does not exist yet is no
 * history (a dry run must not create it); one that cannot be read is
 * reported and the run goes on with rule-based estimates.
 */
export function readHistory(opts: HistoryOptions, warn: (message: string) => void): BuildHistory | undefined {
  const path = historyPath(opts);
  if (path === undefined || !existsSync(path)) return undefined;
  return open(path, warn);
}

/** The history for a build, which records into it (created if needed). */
export function openHistory(opts: HistoryOptions, warn: (message: string) => void): BuildHistory | undefined {
  const path = historyPath(opts);
  return path === undefined ? undefined : open(path, warn);
}

function open(path: string, warn: (message: string) => void): BuildHistory | undefined {
  try {
    return new BuildHistory(path);
  } catch (error) {
    if (!(error instanceof OffloadError)) throw error;
    warn(`${error.message}; going on without history`);
    return undefined;
  }
}

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
  return (event) => {
    if (broken || event.type !== 'jobFinished') return;
    if ((event.status === 'fetched' || event.status === 'copied') && event.from !== undefined && event.bytes !== undefined) {
      try {
        history.recordTransfer({ source: event.from, bytes: event.bytes, seconds: event.seconds, finishedAt: clock() });
      } catch (error) {
        broken = true;
        warn(`${error instanceof Error ? error.message : String(error)}; nothing more of this run is recorded in ${history.path}`);
      }
      return;
    }
    if (event.status !== 'built' && event.status !== 'failed') return;
    const job = jobs.get(event.jobId);
    if (!job) return;
    try {
      history.record({
        name: job.name,
        system: job.system,
        host: event.host,
        speedFactor: speedOf(event.host),
        seconds: event.seconds,
        finishedAt: clock(),
        drvPath: event.jobId,
        status: event.status,
      });
    } catch (error) {
      // SQLite errors (disk full, locked past the busy timeout) must not end the build either.
      broken = true;
      warn(`${error instanceof Error ? error.message : String(error)}; no further builds of this run are recorded in ${history.path}`);
    }
  };
}
