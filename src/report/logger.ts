import { constants, lstatSync, mkdirSync, openSync, readlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { destination as pinoDestination, pino, type DestinationStream, type Logger } from 'pino';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { closeColours, stripColours } from '../remote/terminalEscapes.js';
import type { InternalJsonLogger } from './internalJson.js';
import { timePrefix } from './eventLines.js';

/**
 * offload's log: one pino logger for its own messages (host down, retries,
 * summary), narrated run events and build log lines. Human text reads
 * `[12.3s] offload: ruby is down (…)`, coloured by level on a terminal. Every entry goes to the
 * `--log-file` in full as pino JSON; stderr gets what the options ask for,
 * as human text, pino JSON lines, or Nix internal-json messages for nom.
 *
 * Entries carry `kind` when they are not plain messages:
 *   event      a run event narrated in `msg` (the event itself in `event`)
 *   build-log  one line of a build's log (`host`, `drvName`, `drvPath`)
 *   failure    a failed build (`logTail` holds its last log lines)
 * and `t`, seconds since the run started, once the run has started.
 */

export type LogFormat = 'pretty' | 'json' | 'internal-json';
export const LOG_FORMATS: readonly LogFormat[] = ['pretty', 'json', 'internal-json'];

export interface StderrPolicy {
  format: LogFormat;
  /** Least level of messages shown: 'error' for --quiet. */
  level: 'info' | 'error';
  /** Narrated events on stderr (not on a terminal, where the live view shows them). */
  events: boolean;
  /** Build log lines on stderr. */
  buildLogs: boolean;
  color: boolean;
}

/** Where stderr text goes: the stream itself, or above the live view. */
export interface TextSink {
  write(text: string): unknown;
}

export interface LoggerSetup {
  stderr: StderrPolicy;
  /** The stderr stream, or what prints above the live view; read at every write. */
  sink: () => TextSink;
  /** Where `--log-format internal-json` messages go. */
  nom?: InternalJsonLogger;
  /** `--log-file`: an opened pino destination. */
  file?: DestinationStream;
  /** Seconds since the run started, or undefined before it. */
  clock?: () => number | undefined;
}

interface Entry {
  level: number;
  msg?: string;
  kind?: 'event' | 'build-log' | 'failure';
  t?: number;
  host?: string;
  drvName?: string;
  logTail?: string[];
}

const LEVEL = { info: 30, warn: 40, error: 50 } as const;

export function createLogger(setup: LoggerSetup): Logger {
  const toStderr = stderrWriter(setup);
  const destination: DestinationStream = {
    write(line: string) {
      const entry = JSON.parse(line) as Entry;
      // Build logs arrive with a builder's colours (nothing else: ServerLog filtered them);
      // only a colour terminal shows them, the file and JSON on stderr get plain text.
      const plain = hasColours(entry) ? withoutColours(entry) : undefined;
      const plainLine = plain ? `${JSON.stringify(plain)}\n` : line;
      setup.file?.write(plainLine);
      toStderr(entry, plain ?? entry, plainLine);
    },
  };
  return pino(
    {
      level: 'debug',
      mixin: () => {
        const t = setup.clock?.();
        return t === undefined ? {} : { t: Math.round(t * 1000) / 1000 };
      },
    },
    destination,
  );
}

/**
 * Opens `--log-file` for synchronous appends, so nothing is lost when offload
 * exits. The last path component must not be a symlink (O_NOFOLLOW): in a
 * shared directory a planted link would make offload append build logs to a
 * file of the link owner's choosing. Created 0600: build logs can hold what a
 * build printed, tokens included.
 */
export function logFileDestination(path: string): DestinationStream & { flushSync(): void; end(): void } {
  mkdirSync(dirname(path), { recursive: true });
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP' && lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink()) {
      throw new LogFileSymlinkError(path, readlinkSync(path), { cause: error });
    }
    throw error;
  }
  return pinoDestination({ fd, sync: true });
}

/** `--log-file` names a symlink: offload does not write through links it did not make. */
export class LogFileSymlinkError extends OffloadError {
  constructor(path: string, target: string, options?: { cause?: unknown }) {
    super(
      `the log file ${path} is a symbolic link (to ${target}); offload does not follow links for files it writes, so name the file itself`,
      ExitCode.badInput,
      options,
    );
  }
}

function hasColours(entry: Entry): boolean {
  return (entry.kind === 'build-log' || entry.kind === 'failure') && [entry.msg ?? '', ...(entry.logTail ?? [])].some((text) => text.includes('\x1b'));
}

function withoutColours(entry: Entry): Entry {
  const plain: Entry = { ...entry };
  if (entry.msg !== undefined) plain.msg = stripColours(entry.msg);
  if (entry.logTail !== undefined) plain.logTail = entry.logTail.map(stripColours);
  return plain;
}

function stderrWriter(setup: LoggerSetup): (coloured: Entry, plain: Entry, plainLine: string) => void {
  const policy = setup.stderr;
  return (coloured, plain, plainLine) => {
    const entry = policy.color && policy.format === 'pretty' ? coloured : plain;
    if (!shown(entry, policy)) return;
    if (policy.format === 'json') {
      setup.sink().write(plainLine);
    } else if (policy.format === 'internal-json') {
      // Events, build logs and failures reach nom as activities (NomActivity).
      if (entry.kind !== undefined || !setup.nom) return;
      if (entry.level >= LEVEL.error) setup.nom.error(entry.msg ?? '');
      else setup.nom.info(entry.msg ?? '');
    } else {
      setup.sink().write(prettyText(entry, policy.color));
    }
  };
}

function shown(entry: Entry, policy: StderrPolicy): boolean {
  if (entry.kind === 'event') return policy.events;
  if (entry.kind === 'build-log') return policy.buildLogs;
  return entry.level >= LEVEL[policy.level];
}

/**
 * `offload: message`, as offload's messages always read; colour says the
 * level. The bytes pino-pretty wrote for it (message colour `reset`, a
 * level colour that opens again after a colour closed inside the message),
 * without loading pino-pretty and its dozen modules at every start: ~5 ms
 * of CPU, measured, for one line of text.
 */
function messageLine(entry: Entry, color: boolean): string {
  const text = `offload: ${typeof entry.msg === 'string' ? entry.msg : ''}`;
  if (!color) return `${text}\n`;
  const paint = (code: number) => `\x1b[${code}m${text.replaceAll('\x1b[39m', `\x1b[${code}m`)}\x1b[39m`;
  return `\x1b[0m${entry.level >= LEVEL.error ? paint(31) : entry.level >= LEVEL.warn ? paint(33) : text}\x1b[0m\n`;
}

function prettyText(entry: Entry, color: boolean): string {
  const time = entry.t !== undefined ? timePrefix(entry.t) : '';
  if (entry.kind === 'event') return `${time}${entry.msg ?? ''}\n`;
  if (entry.kind === 'build-log') return `${logPrefix(entry.host ?? '?', entry.drvName ?? '?')}${closeColours(entry.msg ?? '')}\n`;
  const tail = entry.logTail ?? [];
  const tailText = tail.length > 0 ? [`last ${tail.length} log lines of ${entry.drvName ?? 'the build'}:`, ...tail.map((l) => `  ${closeColours(l)}`)].join('\n') + '\n' : '';
  return `${time}${messageLine(entry, color)}${tailText}`;
}

/** How a build log line starts on stderr: `[ruby] hello-2.12.1> `. */
export function logPrefix(host: string, name: string): string {
  return `[${host}] ${name}> `;
}
