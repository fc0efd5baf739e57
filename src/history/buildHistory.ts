import { cacheFilePath, openCacheDatabase } from '../cache/cacheDatabase.js';
import type Database from 'better-sqlite3';
import { OffloadError } from '../errors/offloadError.js';
import { parseNomReports } from './nomReports.js';
import { reportName } from './reportName.js';
import { median } from './median.js';

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

export class HistoryError extends OffloadError {}

/** Latest samples per estimate; older ones stop mattering once builds change. */
export const SAMPLES_PER_ESTIMATE = 10;
const SCHEMA_VERSION = 2;

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

export function defaultHistoryPath(env: NodeJS.ProcessEnv = process.env): string {
  return cacheFilePath('history.sqlite', env);
}

/**
 * How long derivations took, per (name, system, host), in a SQLite file shared
 * by every offload process of the user. WAL lets a plan read while a build
 * writes; the busy timeout lets two builds write the same file in turn.
 *
 * Estimates are normalised to a speedFactor-1 host: each sample is stored with
 * its host's configured speedFactor, and the estimate is the median of
 * `seconds × speedFactor` over the last 10 successful samples (the scheduler
 * then divides by the target host's speedFactor). Median, not mean, so one
 * build that waited on a busy disk doesn't move the estimate.
 */
export class BuildHistory {
  readonly path: string;
  private readonly db: Database.Database;

  constructor(path: string = defaultHistoryPath()) {
    this.path = path;
    this.db = openCacheDatabase(path, 'the build history', (message, cause) => new HistoryError(message, undefined, { cause }), (db) => this.migrate(db));
  }

  record(sample: BuildSample): void {
    this.insert([sample], 'offload');
  }

  recordTransfer(sample: TransferSample): void {
    if (!Number.isFinite(sample.seconds) || sample.seconds <= 0 || !Number.isFinite(sample.bytes) || sample.bytes < 0) return;
    this.db.prepare('INSERT INTO transfers (source, bytes, seconds, finished_at) VALUES (?, ?, ?, ?)').run(sample.source, sample.bytes, sample.seconds, sample.finishedAt.getTime());
  }

  /** Bytes per second from `source`: the median of its last 10 transfers big enough to tell, or undefined. */
  transferRate(source: string): number | undefined {
    const rows = this.db
      .prepare(`SELECT bytes, seconds FROM transfers WHERE source = ? AND bytes >= ? ORDER BY finished_at DESC, id DESC LIMIT ${SAMPLES_PER_ESTIMATE}`)
      .all(source, MIN_RATE_SAMPLE_BYTES) as { bytes: number; seconds: number }[];
    return rows.length === 0 ? undefined : median(rows.map((r) => r.bytes / r.seconds));
  }

  /** Reference-speed estimate for a derivation name on a system, or undefined if it was never built. */
  estimate(name: string, system: string): Estimate | undefined {
    const byName = this.referenceSeconds('name', name, system);
    if (byName.length > 0) return { seconds: median(byName), samples: byName.length, matchedBy: 'name' };
    const byReport = this.referenceSeconds('report_name', reportName(name), system);
    if (byReport.length > 0) return { seconds: median(byReport), samples: byReport.length, matchedBy: 'reportName' };
    return undefined;
  }

  /** Every (name, system) the history can estimate, newest first. */
  estimates(): EstimateRow[] {
    const keys = this.db
      .prepare(
        `SELECT name, system, MAX(finished_at) AS last FROM builds WHERE status = 'built'
         GROUP BY name, system ORDER BY last DESC, name`,
      )
      .all() as { name: string; system: string; last: number }[];
    return keys.map((k) => {
      const secs = this.exactReferenceSeconds('name', k.name, k.system);
      return { name: k.name, system: k.system, seconds: median(secs), samples: secs.length, lastFinishedAt: new Date(k.last) };
    });
  }

  /**
   * Learned speed per host. For each derivation name built successfully on two
   * or more hosts, the reference time is the median over those hosts of
   * (host's median seconds × its speedFactor); the host's speed on that name is
   * reference / its median seconds. A host's learned speed is the median over
   * names. When configured speedFactors are right, learned equals configured.
   */
  hostSpeeds(): Map<string, HostSpeed> {
    const rows = this.db
      .prepare(
        `SELECT name, system, host, seconds, speed_factor AS speedFactor FROM builds
         WHERE status = 'built' AND seconds > 0 ORDER BY finished_at DESC`,
      )
      .all() as { name: string; system: string; host: string; seconds: number; speedFactor: number }[];
    const byKey = groupSamples(rows);
    const ratios = new Map<string, number[]>();
    for (const hosts of byKey.values()) {
      if (hosts.size < 2) continue;
      const perHost = [...hosts].map(([host, s]) => ({ host, secs: median(s.seconds), factor: s.speedFactor }));
      const reference = median(perHost.map((h) => h.secs * h.factor));
      for (const h of perHost) pushTo(ratios, h.host, reference / h.secs);
    }
    const configured = this.configuredSpeeds();
    const result = new Map<string, HostSpeed>();
    for (const [host, r] of [...ratios].sort(([a], [b]) => a.localeCompare(b))) {
      result.set(host, { learnedSpeed: median(r), samples: r.length, configuredSpeed: configured.get(host) ?? 1 });
    }
    return result;
  }

  /**
   * Imports nix-output-monitor's build-reports.csv. nom does not know
   * speedFactors: each host's comes from `speedFactors` (default 1).
   * Returns how many samples were added.
   */
  importNomReports(
    csvText: string,
    options: { system?: string; speedFactors?: ReadonlyMap<string, number>; source?: string } = {},
  ): number {
    const reports = parseNomReports(csvText, options);
    this.insert(
      reports.map((r) => ({ ...r, speedFactor: options.speedFactors?.get(r.host) ?? 1, status: 'built' as const })),
      'nom',
    );
    return reports.length;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private insert(samples: BuildSample[], source: 'offload' | 'nom'): void {
    for (const s of samples) validate(s, this.path);
    const stmt = this.db.prepare(
      `INSERT INTO builds (name, report_name, system, host, speed_factor, seconds, finished_at, drv_path, status, source)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insertAll = this.db.transaction((rows: BuildSample[]) => {
      for (const s of rows) {
        stmt.run(s.name, reportName(s.name), s.system, s.host, s.speedFactor, s.seconds, s.finishedAt.getTime(), s.drvPath ?? null, s.status, source);
      }
    });
    insertAll.immediate(samples);
  }

  /** Exact system first; samples of unknown system (nom imports) only if there are none. */
  private referenceSeconds(column: 'name' | 'report_name', key: string, system: string): number[] {
    const exact = this.exactReferenceSeconds(column, key, system);
    return exact.length > 0 || system === '' ? exact : this.exactReferenceSeconds(column, key, '');
  }

  private exactReferenceSeconds(column: 'name' | 'report_name', key: string, system: string): number[] {
    const rows = this.db
      .prepare(
        `SELECT seconds * speed_factor AS ref FROM builds
         WHERE ${column} = ? AND system = ? AND status = 'built'
         ORDER BY finished_at DESC, id DESC LIMIT ${SAMPLES_PER_ESTIMATE}`,
      )
      .all(key, system) as { ref: number }[];
    return rows.map((r) => r.ref);
  }

  private configuredSpeeds(): Map<string, number> {
    const rows = this.db
      .prepare(
        `SELECT host, speed_factor AS speedFactor FROM builds b
         WHERE id = (SELECT id FROM builds WHERE host = b.host ORDER BY finished_at DESC, id DESC LIMIT 1)`,
      )
      .all() as { host: string; speedFactor: number }[];
    return new Map(rows.map((r) => [r.host, r.speedFactor]));
  }

  private migrate(db: Database.Database): void {
    const upgrade = db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new HistoryError(
          `the build history at ${this.path} has schema version ${version}, newer than this offload understands (${SCHEMA_VERSION}); upgrade offload or set XDG_CACHE_HOME elsewhere`,
        );
      }
      if (version < 1) {
        db.exec(`
          CREATE TABLE builds (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            report_name TEXT NOT NULL,
            system TEXT NOT NULL,
            host TEXT NOT NULL,
            speed_factor REAL NOT NULL,
            seconds REAL NOT NULL,
            finished_at INTEGER NOT NULL,
            drv_path TEXT,
            status TEXT NOT NULL CHECK (status IN ('built', 'failed')),
            source TEXT NOT NULL
          );
          CREATE INDEX builds_by_name ON builds (name, system, finished_at);
          CREATE INDEX builds_by_report_name ON builds (report_name, system, finished_at);
          CREATE INDEX builds_by_host ON builds (host, finished_at);
        `);
      }
      if (version < 2) {
        db.exec(`
          CREATE TABLE transfers (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            seconds REAL NOT NULL,
            finished_at INTEGER NOT NULL
          );
          CREATE INDEX transfers_by_source ON transfers (source, finished_at);
        `);
      }
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    // IMMEDIATE: two processes opening a fresh file must not both create the table.
    upgrade.immediate();
  }
}

/** The scheduler's estimate hook: reference seconds, or undefined to fall back to rules. */
export type EstimateLookup = (name: string, system: string) => number | undefined;

export function historyLookup(history: BuildHistory): EstimateLookup {
  const cache = new Map<string, number | undefined>();
  return (name, system) => {
    const key = `${system}\u0000${name}`;
    if (!cache.has(key)) cache.set(key, history.estimate(name, system)?.seconds);
    return cache.get(key);
  };
}

function validate(s: BuildSample, path: string): void {
  const bad = (what: string) => new HistoryError(`refusing to record ${what} for "${s.name}" on ${s.host} in ${path}`);
  if (s.name === '') throw bad('an empty derivation name');
  if (!Number.isFinite(s.seconds) || s.seconds < 0) throw bad(`duration ${s.seconds}`);
  if (!Number.isFinite(s.speedFactor) || s.speedFactor <= 0) throw bad(`speedFactor ${s.speedFactor}`);
  if (Number.isNaN(s.finishedAt.getTime())) throw bad('an invalid finish time');
}

type HostSamples = Map<string, { seconds: number[]; speedFactor: number }>;

/** Newest-first rows → per (name, system) → per host: up to 10 latest seconds. */
function groupSamples(rows: { name: string; system: string; host: string; seconds: number; speedFactor: number }[]): Map<string, HostSamples> {
  const byKey = new Map<string, HostSamples>();
  for (const r of rows) {
    const key = `${r.system}\u0000${r.name}`;
    let hosts = byKey.get(key);
    if (!hosts) byKey.set(key, (hosts = new Map<string, { seconds: number[]; speedFactor: number }>()));
    let h = hosts.get(r.host);
    if (!h) hosts.set(r.host, (h = { seconds: [], speedFactor: r.speedFactor }));
    if (h.seconds.length < SAMPLES_PER_ESTIMATE) h.seconds.push(r.seconds);
  }
  return byKey;
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
