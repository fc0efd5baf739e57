import type pg from 'pg';
import { createPool, isConnectionError, unavailable, type PostgresLocation } from '../state/postgresConnection.js';
import { migratePostgres } from '../state/postgresSchema.js';
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

/** Retrying a write while the server is away: from the first to the last delay. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2_000;
/** close() waits this long for samples still waiting for the server. */
const CLOSE_FLUSH_MS = 15_000;

interface Pending {
  /** One statement: written whole or not at all. */
  write: () => Promise<void>;
  /** Records it carries, for the message when they are lost. */
  records: number;
  done: () => void;
  failed: (error: unknown) => void;
}

/**
 * The build history in PostgreSQL, shared by a fleet of runners. Reads go
 * straight to the server. Writes that meet a lost connection wait and are
 * sent again when the server is back (a restart loses no sample); close()
 * gives them a last chance and says how many could not be written.
 */
export class PostgresBuildHistory implements BuildHistory {
  readonly location: string;
  private readonly pending: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly where: PostgresLocation,
    private readonly pool: pg.Pool,
  ) {
    this.location = where.display;
  }

  /** Connects and migrates; a server that cannot be reached is a StateUnavailableError. */
  static async open(location: PostgresLocation): Promise<PostgresBuildHistory> {
    const pool = createPool(location);
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw unavailable(location, 'cannot reach', error);
    }
    try {
      await migratePostgres(client, location);
    } catch (error) {
      client.release();
      await pool.end().catch(() => undefined);
      throw error;
    }
    client.release();
    return new PostgresBuildHistory(location, pool);
  }

  async record(samples: readonly BuildSample[], source: SampleSource = 'offload'): Promise<void> {
    for (const s of samples) validateSample(s, this.location);
    return this.enqueue(() => this.insert(samples, source), samples.length);
  }

  async recordTransfer(sample: TransferSample): Promise<void> {
    if (!usableTransfer(sample)) return;
    return this.enqueue(async () => {
      await this.pool.query('INSERT INTO offload.transfers (source, bytes, seconds, finished_at) VALUES ($1, $2, $3, $4)', [
        sample.source,
        sample.bytes,
        sample.seconds,
        sample.finishedAt,
      ]);
    }, 1);
  }

  async transferRates(): Promise<Map<string, number>> {
    const rows = await this.query<{ source: string; bytes: string; seconds: number }>(
      `SELECT source, bytes, seconds FROM (
         SELECT source, bytes, seconds, row_number() OVER (PARTITION BY source ORDER BY finished_at DESC, id DESC) AS n
         FROM offload.transfers WHERE bytes >= $1
       ) t WHERE n <= ${SAMPLES_PER_ESTIMATE} ORDER BY source, n`,
      [MIN_RATE_SAMPLE_BYTES],
    );
    // bigint comes back as a string.
    return transferRatesFromRows(rows.map((r) => ({ source: r.source, bytes: Number(r.bytes), seconds: r.seconds })));
  }

  private enqueue(write: () => Promise<void>, records: number): Promise<void> {
    if (this.closed) throw new HistoryError(`the build history at ${this.location} is closed`);
    return new Promise((done, failed) => {
      this.pending.push({ write, records, done, failed });
      this.kick();
    });
  }

  private kick(): void {
    if (this.flushing) return;
    this.flushing = this.flush().finally(() => {
      this.flushing = undefined;
      // A sample may have arrived after the loop saw an empty queue but before it ended.
      if (this.pending.length > 0 && !this.closed) this.kick();
    });
  }

  async estimateMany(keys: readonly EstimateKey[]): Promise<Map<string, Estimate>> {
    const { names, reportNames } = lookupKeys(keys);
    const [byName, byReport] = await Promise.all([this.referenceRows('name', names), this.referenceRows('report_name', reportNames)]);
    return estimatesFromRows(keys, byName, byReport);
  }

  async estimates(limit?: number): Promise<EstimateRow[]> {
    const keys = await this.query<{ name: string; system: string; last: Date }>(
      `SELECT name, system, max(finished_at) AS last FROM offload.builds WHERE status = 'built'
       GROUP BY name, system ORDER BY last DESC, name ${limit !== undefined ? 'LIMIT $1' : ''}`,
      limit !== undefined ? [limit] : [],
    );
    const refs = await this.referenceRows('name', [...new Set(keys.map((k) => k.name))]);
    return estimateRowsFrom(keys, refs);
  }

  async hostSpeeds(): Promise<Map<string, HostSpeed>> {
    const rows = await this.query<SpeedRow>(
      `SELECT name, system, host, seconds, speed_factor AS "speedFactor" FROM offload.builds
       WHERE status = 'built' AND seconds > 0 ORDER BY finished_at DESC, id DESC`,
    );
    const configured = await this.query<{ host: string; speedFactor: number }>(
      `SELECT DISTINCT ON (host) host, speed_factor AS "speedFactor" FROM offload.builds ORDER BY host, finished_at DESC, id DESC`,
    );
    return hostSpeedsFromRows(rows, new Map(configured.map((r) => [r.host, r.speedFactor])));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.flushing) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_FLUSH_MS)));
      await Promise.race([this.flushing, late]);
      clearTimeout(timer);
    }
    const lost = this.pending.splice(0);
    await this.pool.end().catch(() => undefined);
    if (lost.length > 0) {
      const count = lost.reduce((n, p) => n + p.records, 0);
      const error = new HistoryError(`${count} build record${count === 1 ? '' : 's'} could not be written to the build history at ${this.location}: the server did not come back`);
      for (const p of lost) p.failed(error);
      throw error;
    }
  }

  /** Sends waiting samples in order; a lost connection is retried with back-off until close gives up. */
  private async flush(): Promise<void> {
    let delay = RETRY_MIN_MS;
    while (this.pending.length > 0) {
      const next = this.pending[0]!;
      try {
        await next.write();
        if (this.pending[0] === next) this.pending.shift();
        next.done();
        delay = RETRY_MIN_MS;
      } catch (error) {
        if (!isConnectionError(error)) {
          if (this.pending[0] === next) this.pending.shift();
          next.failed(unavailable(this.where, 'cannot write to', error));
          continue;
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(RETRY_MAX_MS, delay * 2);
      }
    }
  }

  private async insert(samples: readonly BuildSample[], source: SampleSource): Promise<void> {
    if (samples.length === 0) return;
    const columns = ['name', 'report_name', 'system', 'host', 'speed_factor', 'seconds', 'finished_at', 'drv_path', 'status', 'source'];
    const values: unknown[] = [];
    const rows: string[] = [];
    for (const s of samples) {
      const base = values.length;
      values.push(s.name, reportName(s.name), s.system, s.host, s.speedFactor, s.seconds, s.finishedAt, s.drvPath ?? null, s.status, source);
      rows.push(`(${columns.map((_, i) => `$${base + i + 1}`).join(', ')})`);
    }
    // One statement per sample batch: it is written whole or not at all.
    await this.pool.query(`INSERT INTO offload.builds (${columns.join(', ')}) VALUES ${rows.join(', ')}`, values);
  }

  private async referenceRows(column: 'name' | 'report_name', keys: string[]): Promise<ReferenceRow[]> {
    if (keys.length === 0) return [];
    return this.query<ReferenceRow>(
      `SELECT key, system, ref FROM (
         SELECT ${column} AS key, system, seconds * speed_factor AS ref,
                row_number() OVER (PARTITION BY ${column}, system ORDER BY finished_at DESC, id DESC) AS n
         FROM offload.builds WHERE status = 'built' AND ${column} = ANY($1::text[])
       ) r WHERE n <= ${SAMPLES_PER_ESTIMATE} ORDER BY key, system, n`,
      [keys],
    );
  }

  private async query<Row extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<Row[]> {
    try {
      return (await this.pool.query<Row>(text, values)).rows;
    } catch (error) {
      throw unavailable(this.where, 'cannot read', error);
    }
  }
}
