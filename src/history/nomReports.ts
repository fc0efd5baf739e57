import { LOCAL_HOST } from '../schedule/types.js';
import { BadInputError } from '../errors/offloadError.js';
import { CsvError, parseCsv } from './csv.js';

/** One row of nix-output-monitor's build-reports.csv. */
export interface NomReport {
  /** `local` for builds nom saw on this machine. */
  host: string;
  /** nom's key: the derivation name without hash and version. */
  name: string;
  /** `''` when neither the file nor the caller names a system. */
  system: string;
  seconds: number;
  finishedAt: Date;
}

export class NomReportError extends BadInputError {}

const HEADER = {
  host: 'hostname',
  name: 'derivation name',
  buildPlatform: 'build platform',
  time: 'utc time',
  seconds: 'build seconds',
} as const;

/**
 * Reads both layouts nom has written: the current one with a header row
 * (`hostname,derivation name[,build platform,target platform],utc time,build seconds`,
 * times as `YYYY-MM-DD HH:MM:SS` UTC) and the older headerless
 * `host,name,seconds` rows (no time: `importedAt` stands in).
 */
export function parseNomReports(
  csvText: string,
  options: { system?: string; source?: string; importedAt?: Date } = {},
): NomReport[] {
  const source = options.source ?? 'build-reports.csv';
  let rows: string[][];
  try {
    rows = parseCsv(csvText);
  } catch (error) {
    if (error instanceof CsvError) throw new NomReportError(`cannot read ${source}: ${error.message}`);
    throw error;
  }
  const first = rows[0];
  if (first === undefined) return [];
  if (first.includes(HEADER.name)) return rows.slice(1).map((row, i) => namedRow(first, row, i + 2, source, options));
  return rows.map((row, i) => legacyRow(row, i + 1, source, options));
}

function namedRow(header: string[], row: string[], line: number, source: string, options: { system?: string }): NomReport {
  const cell = (column: string): string | undefined => {
    const at = header.indexOf(column);
    return at < 0 ? undefined : row[at];
  };
  const name = required(cell(HEADER.name), HEADER.name, line, source);
  const time = required(cell(HEADER.time), HEADER.time, line, source);
  const finishedAt = new Date(`${time.trim().replace(' ', 'T')}Z`);
  if (Number.isNaN(finishedAt.getTime())) throw new NomReportError(`${source} record ${line}: "${time}" is not a UTC time like 2024-05-01 12:30:00`);
  return {
    host: normaliseHost(cell(HEADER.host) ?? ''),
    name,
    system: options.system ?? cell(HEADER.buildPlatform) ?? '',
    seconds: seconds(required(cell(HEADER.seconds), HEADER.seconds, line, source), line, source),
    finishedAt,
  };
}

function legacyRow(row: string[], line: number, source: string, options: { system?: string; importedAt?: Date }): NomReport {
  if (row.length !== 3) {
    throw new NomReportError(
      `${source} record ${line}: expected a header row with "${HEADER.name}" or three columns host,name,seconds, got ${row.length} columns`,
    );
  }
  const [host, name, secs] = row as [string, string, string];
  return {
    host: normaliseHost(host),
    name,
    system: options.system ?? '',
    seconds: seconds(secs, line, source),
    finishedAt: options.importedAt ?? new Date(),
  };
}

function required(value: string | undefined, column: string, line: number, source: string): string {
  if (value === undefined || value === '') throw new NomReportError(`${source} record ${line}: column "${column}" is empty or missing`);
  return value;
}

function seconds(value: string, line: number, source: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new NomReportError(`${source} record ${line}: "${value}" is not a number of seconds`);
  return n;
}

/** nom writes Nix's machine name: '' or "localhost" for here, else often a store URI such as ssh://user@host. */
export function normaliseHost(host: string): string {
  const h = host.trim();
  if (h === '' || h === 'localhost' || h === 'local') return LOCAL_HOST;
  return h.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/^[^@/]*@/, '');
}
