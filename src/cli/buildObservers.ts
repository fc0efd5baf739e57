import { Option, type Command } from 'commander';
import type { Logger } from 'pino';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { historyLookup, type BuildHistory, type EstimateKey, type EstimateLookup } from '../history/buildHistory.js';
import type { StateLocation } from '../state/stateLocation.js';
import type { RunEvent, RunEventListener } from '../run/runEvents.js';
import { FAILED_JOB_LINE, failedJob } from '../run/failure.js';
import { summaryLine, type RunResult } from '../run/runResult.js';
import { runResultJson } from '../report/runResultJson.js';
import type { Host, Job, Plan } from '../schedule/types.js';
import { eventText, NARRATED_TRANSFER_BYTES, transferProgressText } from '../report/eventLines.js';
import { eventJsonLine, resultJsonLine } from '../report/eventStream.js';
import { InternalJsonLogger } from '../report/internalJson.js';
import { createLogger, logFileDestination, LOG_FORMATS, type LogFormat, type TextSink } from '../report/logger.js';
import { NomActivity } from '../report/nomActivity.js';
import { ProgressTracker } from '../report/progressTracker.js';
import { LiveView, type ViewStream } from '../report/progressView.js';
import { hostEstimates, runReportHtml } from '../report/runReportHtml.js';
import { writeFileAtomic } from './atomicWrite.js';
import { historyRecorder, type HistoryOptions } from './runHistory.js';
import { openHistory } from './sharedState.js';
import { useColor } from './sharedOptions.js';

/** What `offload build` shows while it runs and what it leaves behind. */
export interface BuildOutputOptions {
  json?: boolean;
  jsonEvents?: boolean;
  verbose?: boolean;
  /** `-L`: every build log line on stderr, as `nix build -L` prints them, also on a terminal and with --quiet. */
  printBuildLogs?: boolean;
  quiet?: boolean;
  logFormat?: LogFormat;
  logFile?: string;
  report?: string;
  /** False with --no-color (NO_COLOR is honoured too). */
  color: boolean;
}

export function addBuildOutputOptions(cmd: Command): Command {
  return cmd
    .option('-v, --verbose', 'build logs in full (on a terminal they scroll above the live view)')
    .option('-L, --print-build-logs', "print every build log line on stderr, '[host] name> line', as nix build -L does (on a terminal above the live view; a pipe gets them anyway)")
    .option('-q, --quiet', 'only errors (with failed builds\' log tails) and the output paths')
    .addOption(
      new Option('--log-format <format>', "stderr: 'pretty' (human), 'json' (pino JSON lines) or 'internal-json' (Nix's activity stream, for `|& nom --json`)")
        .choices(LOG_FORMATS)
        .default('pretty'),
    )
    .option('--log-file <file>', 'also append every log entry, build logs included, as pino JSON lines to this file')
    .option('--json-events', 'NDJSON on stdout: one object per run event, then a last line with "type":"result" (what --json prints)')
    .option('--report <file.html>', 'write a self-contained HTML report of the run (estimated vs actual, per host) at the end, even after a failure or interrupt');
}

export interface BuildStreams {
  stdout: { write(text: string): unknown };
  stderr: ViewStream & { isTTY?: boolean };
}

export interface RunContext {
  jobs: readonly Job[];
  hosts: readonly Host[];
  plan?: Plan;
  /** Seconds since the run started. */
  now: () => number;
}

const TAIL_LINES = 25;
const VIEW_TICK_MS = 200;
/** Seconds between progress lines of one long transfer, where no live view shows it. */
const TRANSFER_LINE_S = 10;
/** State for the view is a pass over the whole DAG: at most this often on events. */
const VIEW_EVENT_MS = 50;

/**
 * Everything that watches a build: the live view or plain event lines on
 * stderr, the pino log (stderr and --log-file), --json-events, Nix
 * internal-json for nom, the history database and the HTML report. The
 * executor sees only `log` and the listener from `begin`; `finish` prints
 * the result and writes the files.
 */
export class BuildObservers {
  readonly logger: Logger;
  private readonly stderrSink: TextSink;
  private sink: TextSink;
  private readonly file: ReturnType<typeof logFileDestination> | undefined;
  private readonly nom: NomActivity | undefined;
  private readonly liveTerminal: boolean;
  private readonly color: boolean;
  private history: BuildHistory | undefined;
  private run: (RunContext & { tracker: ProgressTracker; startedAt: Date; names: Map<string, string> }) | undefined;
  private view: LiveView | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private readonly tails = new Map<string, string[]>();
  private skipped: Array<Extract<RunEvent, { type: 'jobSkipped' }>> = [];
  private inFailureBlock = false;
  private lastDraw = -Infinity;
  /** When each long transfer last got a progress line (no live view). */
  private readonly transferNarrated = new Map<number, number>();

  constructor(
    private readonly opts: BuildOutputOptions,
    private readonly streams: BuildStreams = { stdout: process.stdout, stderr: process.stderr },
  ) {
    const format = opts.logFormat ?? 'pretty';
    this.color = useColor(opts, streams.stderr as NodeJS.WriteStream);
    this.liveTerminal = format === 'pretty' && streams.stderr.isTTY === true && !opts.quiet;
    this.stderrSink = streams.stderr;
    this.sink = this.stderrSink;
    if (opts.logFile !== undefined) {
      try {
        this.file = logFileDestination(opts.logFile);
      } catch (error) {
        if (error instanceof OffloadError) throw error;
        throw new OffloadError(`cannot open the log file ${opts.logFile}: ${(error as Error).message}`, ExitCode.badInput, { cause: error });
      }
    }
    const nomLogger = format === 'internal-json' ? new InternalJsonLogger(streams.stderr) : undefined;
    this.nom = nomLogger ? new NomActivity(nomLogger) : undefined;
    this.logger = createLogger({
      stderr: {
        format,
        level: opts.quiet ? 'error' : 'info',
        events: !opts.quiet && !this.liveTerminal,
        buildLogs: opts.printBuildLogs === true || (!opts.quiet && (opts.verbose === true || !this.liveTerminal)),
        color: this.color,
      },
      sink: () => this.sink,
      ...(nomLogger ? { nom: nomLogger } : {}),
      ...(this.file ? { file: this.file } : {}),
      clock: () => this.run?.now(),
    });
  }

  readonly warn = (message: string): void => {
    this.logger.warn(message);
  };

  private transferRates = new Map<string, number>();

  /** Learned bytes per second from a cache or builder (as openHistory read them), when the history knows. */
  readonly transferRate = (source: string): number | undefined => this.transferRates.get(source);

  /** Details for --log-file (an identity file skipped, an agent that cannot be used). */
  readonly debug = (message: string): void => {
    this.logger.debug(message);
  };

  /** Opens the build history (unless --no-history) and returns its estimates for the scheduler. */
  async openHistory(location: StateLocation, opts: HistoryOptions, keys: readonly EstimateKey[]): Promise<EstimateLookup | undefined> {
    this.history = await openHistory(location, opts, 'write', this.warn);
    if (!this.history) return undefined;
    this.transferRates = await this.history.transferRates();
    return historyLookup(this.history, keys);
  }

  /**
   * The executor's `log`: offload's messages become log entries. The
   * failure report (message, log tail, skipped dependents) is dropped here
   * because the events carry it with its job.
   */
  readonly log = (line: string): void => {
    if (FAILED_JOB_LINE.test(line)) {
      this.inFailureBlock = true;
      return;
    }
    const isMessage = line.startsWith('offload: ');
    if (this.inFailureBlock && !isMessage) return;
    this.inFailureBlock = false;
    const text = isMessage ? line.slice('offload: '.length) : line;
    if (/back in rotation/.test(text)) this.logger.info(text);
    else this.logger.warn(text);
  };

  /** Starts watching a run; returns the executor's `onEvent`. */
  begin(ctx: RunContext): RunEventListener {
    const planned = new Map((ctx.plan?.assignments ?? []).map((a) => [a.jobId, a.host]));
    const tracker = new ProgressTracker(ctx.jobs, ctx.hosts, planned);
    this.run = { ...ctx, tracker, startedAt: new Date(), names: new Map(ctx.jobs.map((j) => [j.id, j.name])) };
    const listeners: RunEventListener[] = [(e) => tracker.apply(e), (e) => this.narrate(e), (e) => this.redraw(e)];
    if (this.nom) {
      this.nom.know(ctx.jobs);
      listeners.push((e) => this.nom!.apply(e));
    }
    if (this.opts.jsonEvents) listeners.push((e) => this.streams.stdout.write(eventJsonLine(e)));
    if (this.history) {
      const jobs = new Map(ctx.jobs.map((j) => [j.id, j]));
      const speed = new Map(ctx.hosts.map((h) => [h.id, h.speedFactor]));
      listeners.push(historyRecorder(this.history, jobs, (host) => speed.get(host) ?? 1, this.warn));
    }
    // A further pass (builds after a fetch fell back) keeps the view it has.
    if (this.liveTerminal && !this.view) this.startView();
    return (event) => {
      for (const listener of listeners) listener(event);
    };
  }

  /** Ends the view and streams, writes the report, prints the result and the summary. */
  async finish(result: RunResult): Promise<void> {
    this.stopView();
    this.reportSkipped();
    this.nom?.stopAll();
    if (this.opts.report !== undefined) await this.writeReport(this.opts.report, result);
    if (this.opts.jsonEvents) this.streams.stdout.write(resultJsonLine(result));
    else if (this.opts.json) this.streams.stdout.write(`${JSON.stringify(runResultJson(result), null, 2)}\n`);
    else {
      const paths = Object.values(result.outputs).flatMap((outs) => Object.values(outs));
      if (paths.length > 0) this.streams.stdout.write(`${paths.join('\n')}\n`);
    }
    for (const line of summaryLine(result).split('\n')) this.logger.info(line.replace(/^offload: /, ''));
    await this.close();
  }

  /** Releases the history (after its last writes) and the log file; finish does this, call it when a run ends early by an error. */
  async close(): Promise<void> {
    this.stopView();
    const history = this.history;
    this.history = undefined;
    try {
      await history?.close();
    } catch (error) {
      if (!(error instanceof OffloadError)) throw error;
      this.logger.warn(error.message);
    }
    this.file?.flushSync();
  }

  private narrate(event: RunEvent): void {
    const run = this.run!;
    if (event.type === 'buildLog') {
      const tail = this.tails.get(event.jobId) ?? [];
      tail.push(event.line);
      if (tail.length > TAIL_LINES) tail.shift();
      this.tails.set(event.jobId, tail);
      this.logger.debug({ kind: 'build-log', host: event.host, drvName: run.names.get(event.jobId) ?? event.jobId, drvPath: event.jobId }, event.line);
      return;
    }
    if (event.type === 'transferProgress') {
      this.narrateTransfer(event);
      return;
    }
    if (event.type === 'transferStarted') this.transferNarrated.set(event.transferId, event.time);
    if (event.type === 'transferFinished') this.transferNarrated.delete(event.transferId);
    if (event.type === 'jobStarted') this.tails.delete(event.jobId);
    const text = eventText(event, (jobId, host) => run.tracker.estimateOn(jobId, host));
    if (text !== undefined) this.logger.info({ kind: 'event', event }, text);
    if (event.type === 'jobSkipped') this.skipped.push(event);
    if (event.type === 'jobFinished' && event.status === 'failed') {
      const logTail = this.tails.get(event.jobId) ?? [];
      this.logger.error(
        { kind: 'failure', drvName: event.name, host: event.host, drvPath: event.jobId, logTail },
        `${failedJob({ action: event.action, jobId: event.jobId, host: event.host, from: event.from })} failed: ${event.error ?? 'unknown error'}`,
      );
      this.reportSkipped();
    }
    if (event.type === 'jobFinished') this.tails.delete(event.jobId);
  }

  /** Without a live view, a copy of several GiB still says every few seconds that it moves. */
  private narrateTransfer(event: Extract<RunEvent, { type: 'transferProgress' }>): void {
    if (this.view || event.total < NARRATED_TRANSFER_BYTES) return;
    const last = this.transferNarrated.get(event.transferId);
    if (last === undefined || event.time - last < TRANSFER_LINE_S) return;
    this.transferNarrated.set(event.transferId, event.time);
    const state = this.run!.tracker.transfer(event.transferId, event.time);
    if (state) this.logger.info({ kind: 'event', event }, transferProgressText(state));
  }

  private reportSkipped(): void {
    if (this.skipped.length === 0) return;
    const names = this.skipped.map((e) => e.name);
    const shown = names.length > 10 ? [...names.slice(0, 10), `… ${names.length - 10} more`] : names;
    this.logger.error(`skipped ${names.length} dependent derivation${names.length === 1 ? '' : 's'}: ${shown.join(', ')}`);
    this.skipped = [];
  }

  private startView(): void {
    const view = new LiveView(this.streams.stderr, { color: this.color });
    this.view = view;
    this.sink = { write: (text: string) => view.log(text) };
    this.draw();
    this.ticker = setInterval(() => this.draw(), VIEW_TICK_MS);
    this.ticker.unref();
  }

  /** A job or host changed: show it now, unless a frame was computed moments ago (the ticker follows). */
  private redraw(event: RunEvent): void {
    if (this.view && event.type !== 'buildLog' && performance.now() - this.lastDraw >= VIEW_EVENT_MS) this.draw();
  }

  private draw(): void {
    if (!this.view || !this.run) return;
    this.lastDraw = performance.now();
    this.view.update(this.run.tracker.state(this.run.now()));
  }

  private stopView(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    if (!this.view || !this.run) return;
    this.draw();
    this.view.stop();
    this.view = undefined;
    this.sink = this.stderrSink;
  }

  private async writeReport(path: string, result: RunResult): Promise<void> {
    const run = this.run;
    const jobs = new Map((run?.jobs ?? []).map((j) => [j.id, j]));
    const ran = new Set(result.records.map((r) => r.host));
    const hosts = (run?.hosts ?? []).filter((h) => h.maxJobs > 0 || ran.has(h.id));
    try {
      await writeFileAtomic(
        path,
        runReportHtml({
          records: result.records,
          makespan: result.makespan,
          hosts,
          estimates: hostEstimates(result.records, jobs, hosts),
          interrupted: result.interrupted,
          command: ['offload', ...process.argv.slice(2)].join(' '),
          ...(run ? { startedAt: run.startedAt } : {}),
          ...(run?.plan ? { plannedMakespan: run.plan.makespan, criticalPath: run.plan.criticalPath } : {}),
        }),
        'the run report',
      );
      this.logger.info(`wrote the run report to ${path}`);
    } catch (error) {
      if (!(error instanceof OffloadError)) throw error;
      this.logger.error(error.message);
    }
  }
}
