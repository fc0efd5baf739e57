import type Database from 'better-sqlite3';
import { cacheFilePath, openCacheDatabase } from '../cache/cacheDatabase.js';
import {
  estimateRowsFrom,
  estimatesFromRows,
  hostSpeedsFromRows,
  HistoryError,
  lookupKeys,
  MIN_RATE_SAMPLE_BYTES,
  transferRatesFromRows,
  usableTransfer,
  SAMPLES_PER_ESTIMATE,
  validateSample,
  type BuildHistory,
  type BuildSample,
  type Estimate,
  type EstimateKey,
  type EstimateRow,
  type HostSpeed,
  type ReferenceRow,
  type SampleSource,
  type SpeedRow,
  type TransferSample,
} from './buildHistory.js';
import { reportName } from './reportName.js';

const SCHEMA_VERSION = 2;

export function defaultHistoryPath(env: NodeJS.ProcessEnv = process.env): string {
  return cacheFilePath('history.sqlite', env);
}

/**
 * The build history in a SQLite file of the user (the default, one machine).
 * WAL lets a plan read while a build writes; the busy timeout lets two builds
 * write the same file in turn.
 */
export class SqliteBuildHistory implements BuildHistory {
  readonly location: string;
  private readonly db: Database.Database;

  constructor(path: string = defaultHistoryPath()) {
    this.location = path;
    this.db = openCacheDatabase(path, 'the build history', (message, cause) => new HistoryError(message, { cause }), { version: SCHEMA_VERSION, migrate: (db) => this.migrate(db) });
  }

  async record(samples: readonly BuildSample[], source: SampleSource = 'offload'): Promise<void> {
    for (const s of samples) validateSample(s, this.location);
    const stmt = this.db.prepare(
      `INSERT INTO builds (name, report_name, system, host, speed_factor, seconds, finished_at, drv_path, status, source)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insertAll = this.db.transaction((rows: readonly BuildSample[]) => {
      for (const s of rows) {
        stmt.run(s.name, reportName(s.name), s.system, s.host, s.speedFactor, s.seconds, s.finishedAt.getTime(), s.drvPath ?? null, s.status, source);
      }
    });
    insertAll.immediate(samples);
  }

  async estimateMany(keys: readonly EstimateKey[]): Promise<Map<string, Estimate>> {
    const { names, reportNames } = lookupKeys(keys);
    return estimatesFromRows(keys, this.referenceRows('name', names), this.referenceRows('report_name', reportNames));
  }

  async estimates(limit?: number): Promise<EstimateRow[]> {
    const keys = this.db
      .prepare(
        `SELECT name, system, MAX(finished_at) AS last FROM builds WHERE status = 'built'
         GROUP BY name, system ORDER BY last DESC, name ${limit !== undefined ? 'LIMIT ?' : ''}`,
      )
      .all(...(limit !== undefined ? [limit] : [])) as { name: string; system: string; last: number }[];
    const refs = this.referenceRows('name', [...new Set(keys.map((k) => k.name))]);
    return estimateRowsFrom(
      keys.map((k) => ({ ...k, last: new Date(k.last) })),
      refs,
    );
  }

  async hostSpeeds(): Promise<Map<string, HostSpeed>> {
    const rows = this.db
      .prepare(
        `SELECT name, system, host, seconds, speed_factor AS speedFactor FROM builds
         WHERE status = 'built' AND seconds > 0 ORDER BY finished_at DESC, id DESC`,
      )
      .all() as SpeedRow[];
    const configured = this.db
      .prepare(
        `SELECT host, speed_factor AS speedFactor FROM builds b
         WHERE id = (SELECT id FROM builds WHERE host = b.host ORDER BY finished_at DESC, id DESC LIMIT 1)`,
      )
      .all() as { host: string; speedFactor: number }[];
    return hostSpeedsFromRows(rows, new Map(configured.map((r) => [r.host, r.speedFactor])));
  }

  async recordTransfer(sample: TransferSample): Promise<void> {
    if (!usableTransfer(sample)) return;
    this.db.prepare('INSERT INTO transfers (source, bytes, seconds, finished_at) VALUES (?, ?, ?, ?)').run(sample.source, sample.bytes, sample.seconds, sample.finishedAt.getTime());
  }

  async transferRates(): Promise<Map<string, number>> {
    const rows = this.db
      .prepare(
        `SELECT source, bytes, seconds FROM (
           SELECT source, bytes, seconds, row_number() OVER (PARTITION BY source ORDER BY finished_at DESC, id DESC) AS n
           FROM transfers WHERE bytes >= ?
         ) WHERE n <= ${SAMPLES_PER_ESTIMATE} ORDER BY source, n`,
      )
      .all(MIN_RATE_SAMPLE_BYTES) as { source: string; bytes: number; seconds: number }[];
    return transferRatesFromRows(rows);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  /** The newest successful samples (reference seconds) per (key, system), for the given keys. */
  private referenceRows(column: 'name' | 'report_name', keys: string[]): ReferenceRow[] {
    if (keys.length === 0) return [];
    return this.db
      .prepare(
        `SELECT key, system, ref FROM (
           SELECT ${column} AS key, system, seconds * speed_factor AS ref,
                  row_number() OVER (PARTITION BY ${column}, system ORDER BY finished_at DESC, id DESC) AS n
           FROM builds WHERE status = 'built' AND ${column} IN (SELECT value FROM json_each(?))
         ) WHERE n <= ${SAMPLES_PER_ESTIMATE} ORDER BY key, system, n`,
      )
      .all(JSON.stringify(keys)) as ReferenceRow[];
  }

  private migrate(db: Database.Database): void {
    const upgrade = db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new HistoryError(
          `the build history at ${this.location} has schema version ${version}, newer than this offload understands (${SCHEMA_VERSION}); upgrade offload or set XDG_CACHE_HOME elsewhere`,
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
