import { BadInputError } from '../errors/offloadError.js';
import { median } from './median.js';
import { parseNomReports } from './nomReports.js';
import { reportName } from './reportName.js';

export type BuildStatus = 'built' | 'failed';

export interface BuildSample {
  /** Derivation name without the hash (`hello-2.12.1`). */
  name: string;
  system: string;
  /** hostName, or `local`. */
  host: string;
  /** The host's configured speedFactor when it built this; turns seconds into reference seconds. */
  speedFactor: number;
  /** Wall-clock seconds the build itself took on that host. */
  seconds: number;
  finishedAt: Date;
  drvPath?: string;
  status: BuildStatus;
}

/** One download from a cache or copy from a builder: how fast bytes came from there. */
export interface TransferSample {
  /** A cache URL or a builder's hostName. */
  source: string;
  bytes: number;
  seconds: number;
  finishedAt: Date;
}

/** Smaller transfers are mostly fixed cost (requests, registration); they say nothing about the rate. */
export const MIN_RATE_SAMPLE_BYTES = 256 * 1024;

/** Who recorded a sample: offload's own builds, or an import of nix-output-monitor's reports. */
export type SampleSource = 'offload' | 'nom';

export interface Estimate {
  /** Seconds on a speedFactor-1 host. */
  seconds: number;
  samples: number;
  /** `name`: this exact name; `reportName`: another version of it (or a nom import). */
  matchedBy: 'name' | 'reportName';
}

export interface HostSpeed {
  /** Speed the history shows, in the same units as speedFactor. */
  learnedSpeed: number;
  /** Derivation names that compared this host with others. */
  samples: number;
  /** speedFactor recorded with this host's most recent sample. */
  configuredSpeed: number;
}

export interface EstimateRow {
  name: string;
  system: string;
  seconds: number;
  samples: number;
  lastFinishedAt: Date;
}

export interface EstimateKey {
  name: string;
  system: string;
}

/** One successful sample as the estimates read it: reference seconds, newest first per key. */
export interface ReferenceRow {
  /** The name, or the report name, the row was selected by. */
  key: string;
  system: string;
  ref: number;
}

/** A successful sample as host speeds read it, newest first. */
export interface SpeedRow {
  name: string;
  system: string;
  host: string;
  seconds: number;
  speedFactor: number;
}

export class HistoryError extends BadInputError {}

/** Latest samples per estimate; older ones stop mattering once builds change. */
export const SAMPLES_PER_ESTIMATE = 10;

/**
 * How long derivations took, per (name, system, host), shared by every
 * offload process that uses the same state: a SQLite file of the user on one
 * machine (sqliteBuildHistory.ts), or PostgreSQL for a fleet
 * (postgresBuildHistory.ts), so one runner's builds serve every runner's
 * next plan.
 *
 * Estimates are normalised to a speedFactor-1 host: each sample is stored with
 * its host's configured speedFactor, and the estimate is the median of
 * `seconds × speedFactor` over the last 10 successful samples (the scheduler
 * then divides by the target host's speedFactor). Median, not mean, so one
 * build that waited on a busy disk doesn't move the estimate.
 *
 * New kinds of records (a cache's download rate, say) get their own table in
 * both stores' migrations and their own methods here.
 */
export interface BuildHistory {
  /** Where it lives, for messages: a file, or a URL without its password. */
  readonly location: string;
  record(samples: readonly BuildSample[], source?: SampleSource): Promise<void>;
  /**
   * Estimates for many derivations at once (a plan asks for every job): the
   * exact name first, then other versions of it; the exact system first, then
   * samples of unknown system (nom imports).
   */
  estimateMany(keys: readonly EstimateKey[]): Promise<Map<string, Estimate>>;
  /** Every (name, system) the history can estimate, newest first. */
  estimates(limit?: number): Promise<EstimateRow[]>;
  hostSpeeds(): Promise<Map<string, HostSpeed>>;
  /** A transfer too small or too quick to tell a rate is ignored. */
  recordTransfer(sample: TransferSample): Promise<void>;
  /**
   * Bytes per second from each source (cache URL or builder) the history has
   * seen: the median of its last 10 transfers of at least
   * MIN_RATE_SAMPLE_BYTES. Few sources, so a plan reads them all at once.
   */
  transferRates(): Promise<Map<string, number>>;
  close(): Promise<void>;
}

/** The scheduler's estimate hook: reference seconds, or undefined to fall back to rules. */
export type EstimateLookup = (name: string, system: string) => number | undefined;

export function estimateKey(name: string, system: string): string {
  return `${system}\u0000${name}`;
}

/** Reads every estimate the jobs need in one pass and answers the scheduler from memory. */
export async function historyLookup(history: BuildHistory, keys: readonly EstimateKey[]): Promise<EstimateLookup> {
  const found = await history.estimateMany(keys);
  return (name, system) => found.get(estimateKey(name, system))?.seconds;
}

/**
 * Imports nix-output-monitor's build-reports.csv. nom does not know
 * speedFactors: each host's comes from `speedFactors` (default 1).
 * Returns how many samples were added.
 */
export async function importNomReports(
  history: BuildHistory,
  csvText: string,
  options: { system?: string; speedFactors?: ReadonlyMap<string, number>; source?: string } = {},
): Promise<number> {
  const reports = parseNomReports(csvText, options);
  await history.record(
    reports.map((r) => ({ ...r, speedFactor: options.speedFactors?.get(r.host) ?? 1, status: 'built' as const })),
    'nom',
  );
  return reports.length;
}

/** Whether a transfer sample says anything about a rate (a zero-second or negative one does not). */
export function usableTransfer(t: TransferSample): boolean {
  return Number.isFinite(t.seconds) && t.seconds > 0 && Number.isFinite(t.bytes) && t.bytes >= 0 && !Number.isNaN(t.finishedAt.getTime());
}

/** Rates from newest-first rows (already limited to big enough transfers): the median of the last 10 per source. */
export function transferRatesFromRows(rows: ReadonlyArray<{ source: string; bytes: number; seconds: number }>): Map<string, number> {
  const bySource = new Map<string, number[]>();
  for (const r of rows) {
    const list = bySource.get(r.source) ?? [];
    if (list.length < SAMPLES_PER_ESTIMATE) list.push(r.bytes / r.seconds);
    bySource.set(r.source, list);
  }
  return new Map([...bySource].map(([source, rates]) => [source, median(rates)]));
}

export function validateSample(s: BuildSample, location: string): void {
  const bad = (what: string) => new HistoryError(`refusing to record ${what} for "${s.name}" on ${s.host} in ${location}`);
  if (s.name === '') throw bad('an empty derivation name');
  if (!Number.isFinite(s.seconds) || s.seconds < 0) throw bad(`duration ${s.seconds}`);
  if (!Number.isFinite(s.speedFactor) || s.speedFactor <= 0) throw bad(`speedFactor ${s.speedFactor}`);
  if (Number.isNaN(s.finishedAt.getTime())) throw bad('an invalid finish time');
}

/** The keys a set of names is looked up by: the names, and (for a second query) their report names. */
export function lookupKeys(keys: readonly EstimateKey[]): { names: string[]; reportNames: string[] } {
  return {
    names: [...new Set(keys.map((k) => k.name))],
    reportNames: [...new Set(keys.map((k) => reportName(k.name)))],
  };
}

/**
 * Estimates from the newest-first reference rows the stores selected (at
 * most SAMPLES_PER_ESTIMATE per key and system), by exact name and by report
 * name.
 */
export function estimatesFromRows(keys: readonly EstimateKey[], byName: readonly ReferenceRow[], byReportName: readonly ReferenceRow[]): Map<string, Estimate> {
  const group = (rows: readonly ReferenceRow[]) => {
    const out = new Map<string, number[]>();
    for (const r of rows) {
      const k = estimateKey(r.key, r.system);
      const list = out.get(k);
      if (!list) out.set(k, [r.ref]);
      else if (list.length < SAMPLES_PER_ESTIMATE) list.push(r.ref);
    }
    return out;
  };
  const names = group(byName);
  const reports = group(byReportName);
  // Exact system first; samples of unknown system (nom imports) only if there are none.
  const pick = (table: Map<string, number[]>, key: string, system: string) =>
    table.get(estimateKey(key, system)) ?? (system === '' ? undefined : table.get(estimateKey(key, '')));
  const result = new Map<string, Estimate>();
  for (const { name, system } of keys) {
    const exact = pick(names, name, system);
    if (exact) {
      result.set(estimateKey(name, system), { seconds: median(exact), samples: exact.length, matchedBy: 'name' });
      continue;
    }
    const similar = pick(reports, reportName(name), system);
    if (similar) result.set(estimateKey(name, system), { seconds: median(similar), samples: similar.length, matchedBy: 'reportName' });
  }
  return result;
}

/**
 * Learned speed per host. For each derivation name built successfully on two
 * or more hosts, the reference time is the median over those hosts of
 * (host's median seconds × its speedFactor); the host's speed on that name is
 * reference / its median seconds. A host's learned speed is the median over
 * names. When configured speedFactors are right, learned equals configured.
 */
export function hostSpeedsFromRows(rows: readonly SpeedRow[], configured: ReadonlyMap<string, number>): Map<string, HostSpeed> {
  type HostSamples = Map<string, { seconds: number[]; speedFactor: number }>;
  const byKey = new Map<string, HostSamples>();
  for (const r of rows) {
    const key = estimateKey(r.name, r.system);
    let hosts = byKey.get(key);
    if (!hosts) byKey.set(key, (hosts = new Map<string, { seconds: number[]; speedFactor: number }>()));
    let h = hosts.get(r.host);
    if (!h) hosts.set(r.host, (h = { seconds: [], speedFactor: r.speedFactor }));
    if (h.seconds.length < SAMPLES_PER_ESTIMATE) h.seconds.push(r.seconds);
  }
  const ratios = new Map<string, number[]>();
  for (const hosts of byKey.values()) {
    if (hosts.size < 2) continue;
    const perHost = [...hosts].map(([host, s]) => ({ host, secs: median(s.seconds), factor: s.speedFactor }));
    const reference = median(perHost.map((h) => h.secs * h.factor));
    for (const h of perHost) {
      const list = ratios.get(h.host);
      if (list) list.push(reference / h.secs);
      else ratios.set(h.host, [reference / h.secs]);
    }
  }
  const result = new Map<string, HostSpeed>();
  for (const [host, r] of [...ratios].sort(([a], [b]) => a.localeCompare(b))) {
    result.set(host, { learnedSpeed: median(r), samples: r.length, configuredSpeed: configured.get(host) ?? 1 });
  }
  return result;
}

/** `offload history`'s rows from per-key reference rows (newest first) and each key's last finish. */
export function estimateRowsFrom(keys: ReadonlyArray<{ name: string; system: string; last: Date }>, refs: readonly ReferenceRow[]): EstimateRow[] {
  const grouped = new Map<string, number[]>();
  for (const r of refs) {
    const k = estimateKey(r.key, r.system);
    const list = grouped.get(k) ?? [];
    if (list.length < SAMPLES_PER_ESTIMATE) list.push(r.ref);
    grouped.set(k, list);
  }
  return keys.map((k) => {
    const secs = grouped.get(estimateKey(k.name, k.system)) ?? [];
    return { name: k.name, system: k.system, seconds: median(secs), samples: secs.length, lastFinishedAt: k.last };
  });
}
