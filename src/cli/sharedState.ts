import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import type { MachinesConfig } from '../config/machine.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { BuildHistory } from '../history/buildHistory.js';
import { defaultHistoryPath, SqliteBuildHistory } from '../history/sqliteBuildHistory.js';
import type { SlotLeases } from '../slots/slotLeases.js';
import { SqliteSlotLeases } from '../slots/sqliteSlotLeases.js';
import { stateLocation, type StateLocation } from '../state/stateLocation.js';

/** `--state`, `--history-file` and `--no-history`, shared by plan, build and history. */
export interface StateOptions {
  state?: string;
  historyFile?: string;
  /** False with --no-history. */
  history?: boolean;
}

export function addStateOption(cmd: Command): Command {
  return cmd.option(
    '--state <url>',
    'share build slots and history with a fleet of runners in PostgreSQL (postgres://user@host:port/db; default: $OFFLOAD_STATE, the "state" key of the machines file, else SQLite files in ~/.cache/offload)',
  );
}

export function addHistoryOptions(cmd: Command, verb: string): Command {
  addStateOption(cmd);
  return cmd
    .option('--history-file <file>', `build history for estimates (default: ${defaultHistoryPath({ HOME: '~' })}, following $XDG_CACHE_HOME)`)
    .option('--no-history', `do not use the build history (${verb})`);
}

/** Where this command's shared state is: --state, $OFFLOAD_STATE, the machines file's `state`, else local files. */
export function resolveState(opts: StateOptions, config?: Pick<MachinesConfig, 'state'>): StateLocation {
  const location = stateLocation({
    ...(opts.state !== undefined ? { flag: opts.state } : {}),
    ...(config?.state ? { config: { state: config.state.url, file: config.state.file } } : {}),
  });
  if (location.kind === 'postgres' && opts.historyFile !== undefined) {
    throw new OffloadError(`--history-file is for the local history; the shared state (${location.via}) at ${location.display} holds the history`, ExitCode.badInput);
  }
  return location;
}

/**
 * The history for reading (`read`: a local file that does not exist yet is
 * no history, a dry run must not create it) or for recording a build
 * (`write`). A local file that cannot be used is reported and the run goes
 * on with rule-based estimates; the shared state must work or the command
 * fails (a fleet never falls back to per-machine state).
 */
export async function openHistory(location: StateLocation, opts: StateOptions, mode: 'read' | 'write', warn: (message: string) => void): Promise<BuildHistory | undefined> {
  if (opts.history === false) return undefined;
  if (location.kind === 'postgres') return openPostgresHistory(location);
  const path = opts.historyFile ?? defaultHistoryPath();
  if (mode === 'read' && !existsSync(path)) return undefined;
  try {
    return new SqliteBuildHistory(path);
  } catch (error) {
    if (!(error instanceof OffloadError)) throw error;
    warn(`${error.message}; going on without history`);
    return undefined;
  }
}

/** The history `offload history` reads and imports into: it must open. */
export async function openHistoryStrict(location: StateLocation, opts: StateOptions): Promise<BuildHistory> {
  if (location.kind === 'postgres') return openPostgresHistory(location);
  return new SqliteBuildHistory(opts.historyFile ?? defaultHistoryPath());
}

export async function openSlotLeases(location: StateLocation, log: (line: string) => void): Promise<SlotLeases> {
  if (location.kind === 'local') return new SqliteSlotLeases();
  // Loaded only for a shared state: the PostgreSQL client is a good part of offload's start-up otherwise.
  const { PostgresSlotLeases } = await import('../slots/postgresSlotLeases.js');
  return PostgresSlotLeases.open(location, { onConnection: (_event, message) => log(`offload: ${message}`) });
}

async function openPostgresHistory(location: Extract<StateLocation, { kind: 'postgres' }>): Promise<BuildHistory> {
  const { PostgresBuildHistory } = await import('../history/postgresBuildHistory.js');
  return PostgresBuildHistory.open(location);
}
