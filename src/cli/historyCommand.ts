import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import type { Command } from 'commander';
import { importNomReports, type EstimateRow, type HostSpeed } from '../history/buildHistory.js';
import { defaultHistoryPath } from '../history/sqliteBuildHistory.js';
import { loadMachinesConfig } from '../config/loadMachines.js';
import { addStateOption, openHistoryStrict, resolveState } from './sharedState.js';
import { formatDuration } from '../report/duration.js';
import { renderTable } from '../report/table.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { terminalWidth } from './sharedOptions.js';

type Run = (action: () => Promise<number>) => Promise<void>;

interface HistoryOptions {
  json?: boolean;
  historyFile?: string;
  state?: string;
  limit?: number;
}

interface ImportOptions {
  json?: boolean;
  historyFile?: string;
  state?: string;
  system?: string;
  speedFactors?: Map<string, number>;
}

export function registerHistoryCommand(program: Command, run: Run): void {
  const history = program
    .command('history')
    .description('what offload has learned: duration estimates per derivation and effective host speeds')
    .option('--json', 'print one JSON object on stdout (for scripts)')
    .option('--history-file <file>', `the history database (default: ${defaultHistoryPath({ HOME: '~' })}, following $XDG_CACHE_HOME)`)
    .option('--limit <n>', 'show at most this many estimates, newest first (default: all)', parsePositive);
  addStateOption(history)
    .addHelpText(
      'after',
      `
Examples:
  offload history --limit 20
  offload history --json | jq '.hosts[] | {host, learnedSpeed, configuredSpeed}'
  offload history import-nom --speed-factors ruby=2,kana=1`,
    )
    .action((opts: HistoryOptions) => run(() => historyAction(opts)));
  const importCmd = history
    .command('import-nom')
    .description("learn durations from nix-output-monitor's build-reports.csv")
    .argument('[file]', `nom's reports (default: ${nomReportsPath({ HOME: '~' })})`)
    .option('--system <system>', 'system of the imported builds, when the file does not say (default: any system)')
    .option('--speed-factors <host=n,...>', 'speedFactor of each host at the time nom saw its builds (default 1)', parseSpeedFactors)
    .option('--history-file <file>', 'the history database to import into')
    .option('--json', 'print one JSON object on stdout (for scripts)');
  addStateOption(importCmd)
    .addHelpText(
      'after',
      `
Examples:
  offload history import-nom
  offload history import-nom ~/build-reports.csv --system x86_64-linux --speed-factors ruby=2`,
    )
    .action((file: string | undefined, opts: ImportOptions, cmd: Command) =>
      run(() =>
        importNomAction(file, {
          ...opts,
          historyFile: opts.historyFile ?? cmd.parent?.opts<HistoryOptions>().historyFile,
          state: opts.state ?? cmd.parent?.opts<HistoryOptions>().state,
        }),
      ),
    );
}

export async function historyAction(opts: HistoryOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const history = await openHistoryStrict(await historyState(opts), opts);
  try {
    const estimates = await history.estimates(opts.limit);
    const speeds = await history.hostSpeeds();
    out.write(opts.json ? `${JSON.stringify(historyJson(history.location, estimates, speeds), null, 2)}\n` : historyText(history.location, estimates, speeds, terminalWidth(out as NodeJS.WriteStream)));
    return ExitCode.ok;
  } finally {
    await history.close();
  }
}

/** --state, $OFFLOAD_STATE, or the `state` of the machines file offload would read. */
async function historyState(opts: { state?: string; historyFile?: string }) {
  const config = opts.state === undefined && !process.env.OFFLOAD_STATE && opts.historyFile === undefined ? await loadMachinesConfig({ env: process.env }) : undefined;
  return resolveState(opts, config);
}

export async function importNomAction(file: string | undefined, opts: ImportOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const source = file ?? nomReportsPath();
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (error) {
    throw new OffloadError(`cannot read nix-output-monitor's reports at ${source}: ${(error as Error).message}`, ExitCode.badInput, { cause: error });
  }
  const history = await openHistoryStrict(await historyState(opts), opts);
  try {
    const added = await importNomReports(history, text, {
      source,
      ...(opts.system !== undefined ? { system: opts.system } : {}),
      ...(opts.speedFactors ? { speedFactors: opts.speedFactors } : {}),
    });
    if (opts.json) out.write(`${JSON.stringify({ imported: added, source, historyFile: history.location })}\n`);
    else out.write(`imported ${added} build${added === 1 ? '' : 's'} from ${source} into ${history.location}\n`);
    return ExitCode.ok;
  } finally {
    await history.close();
  }
}

/** Where nom keeps its reports: $XDG_STATE_HOME (nom ≥ 2.1), as nom's own getXdgDirectory XdgState. */
export function nomReportsPath(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.XDG_STATE_HOME;
  const base = state !== undefined && isAbsolute(state) ? state : join(env.HOME ?? homedir(), '.local', 'state');
  return join(base, 'nix-output-monitor', 'build-reports.csv');
}

function historyJson(path: string, estimates: EstimateRow[], speeds: Map<string, HostSpeed>) {
  return {
    path,
    estimates: estimates.map((e) => ({
      name: e.name,
      system: e.system,
      seconds: Math.round(e.seconds * 1000) / 1000,
      samples: e.samples,
      lastFinishedAt: e.lastFinishedAt.toISOString(),
    })),
    hosts: [...speeds].map(([host, s]) => ({
      host,
      learnedSpeed: Math.round(s.learnedSpeed * 1000) / 1000,
      configuredSpeed: s.configuredSpeed,
      comparedNames: s.samples,
    })),
  };
}

function historyText(path: string, estimates: EstimateRow[], speeds: Map<string, HostSpeed>, width: number | undefined): string {
  if (estimates.length === 0) return `no builds recorded yet in ${path}\n`;
  const parts = [
    `history: ${path}`,
    '',
    renderTable(
      ['derivation', 'system', 'estimate', 'samples', 'last built'],
      estimates.map((e) => [e.name, e.system || 'any', formatDuration(e.seconds), String(e.samples), e.lastFinishedAt.toISOString().slice(0, 16).replace('T', ' ')]),
      new Set([2, 3]),
      { width, wrap: ['derivation'] },
    ),
    '',
  ];
  if (speeds.size === 0) parts.push('host speeds: no derivation has been built on two hosts yet');
  else {
    parts.push(
      renderTable(
        ['host', 'learned speed', 'configured speedFactor', 'compared on'],
        [...speeds].map(([host, s]) => [host, s.learnedSpeed.toFixed(2), String(s.configuredSpeed), `${s.samples} name${s.samples === 1 ? '' : 's'}`]),
        new Set([1, 2, 3]),
      ),
    );
  }
  return `${parts.join('\n')}\n`;
}

function parsePositive(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new OffloadError(`--limit: expected a whole number ≥ 1, got "${value}"`, ExitCode.badInput);
  return n;
}

export function parseSpeedFactors(value: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of value.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const eq = part.lastIndexOf('=');
    const host = part.slice(0, eq).trim();
    const factor = Number(part.slice(eq + 1));
    if (eq <= 0 || host === '' || !Number.isFinite(factor) || factor <= 0) {
      throw new OffloadError(`--speed-factors: expected host=number (number > 0), got "${part}"`, ExitCode.badInput);
    }
    out.set(host, factor);
  }
  return out;
}
