import type pg from 'pg';
import { StateUnavailableError, stateErrorMessage, type PostgresLocation } from './postgresConnection.js';

/**
 * offload's tables in PostgreSQL, all in the schema `offload`. Each entry of
 * MIGRATIONS takes the schema from version i to i + 1; append a step, never
 * edit one that has shipped. An offload that finds a newer version than it
 * knows refuses to touch it.
 */
export const POSTGRES_SCHEMA_VERSION = 1;

/** Advisory lock keys (first int4): a space for offload's own locks, one for runners' session locks. */
export const LOCK_SPACE = 0x6f66666c;
export const RUNNER_LOCK_SPACE = 0x6f666672;
/** Second keys in LOCK_SPACE. */
export const MIGRATION_LOCK = 0;
export const DISPATCH_LOCK = 1;

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE offload.schema_version (version integer NOT NULL);
  CREATE TABLE offload.builds (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    report_name text NOT NULL,
    system text NOT NULL,
    host text NOT NULL,
    speed_factor double precision NOT NULL,
    seconds double precision NOT NULL,
    finished_at timestamptz NOT NULL,
    drv_path text,
    status text NOT NULL CHECK (status IN ('built', 'failed')),
    source text NOT NULL
  );
  CREATE INDEX builds_by_name ON offload.builds (name, system, finished_at);
  CREATE INDEX builds_by_report_name ON offload.builds (report_name, system, finished_at);
  CREATE INDEX builds_by_host ON offload.builds (host, finished_at);
  -- Downloads from a cache and copies from a builder: how fast bytes came from each source.
  CREATE TABLE offload.transfers (
    id bigserial PRIMARY KEY,
    source text NOT NULL,
    bytes bigint NOT NULL,
    seconds double precision NOT NULL,
    finished_at timestamptz NOT NULL
  );
  CREATE INDEX transfers_by_source ON offload.transfers (source, finished_at);
  -- One row per running offload process. It is alive while it holds the session
  -- advisory lock (RUNNER_LOCK_SPACE, lock_key), or for a grace after its last
  -- heartbeat or after the server started (so a restart does not free every slot).
  CREATE TABLE offload.runners (
    id uuid PRIMARY KEY,
    lock_key integer NOT NULL UNIQUE CHECK (lock_key >= 0),
    hostname text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL
  );
  CREATE TABLE offload.slot_leases (
    host text NOT NULL,
    slot integer NOT NULL,
    runner uuid NOT NULL REFERENCES offload.runners ON DELETE CASCADE,
    acquired_at timestamptz NOT NULL,
    PRIMARY KEY (host, slot)
  );
  CREATE INDEX slot_leases_by_runner ON offload.slot_leases (runner);
  -- A runner waiting for a slot on a host, with the remaining critical path
  -- (seconds) of its best job there: free slots go to the highest first.
  CREATE TABLE offload.slot_waiters (
    runner uuid NOT NULL REFERENCES offload.runners ON DELETE CASCADE,
    host text NOT NULL,
    priority double precision NOT NULL,
    since timestamptz NOT NULL,
    PRIMARY KEY (runner, host)
  );
  CREATE INDEX slot_waiters_by_host ON offload.slot_waiters (host);
  `,
];

/**
 * Brings the schema to POSTGRES_SCHEMA_VERSION in one transaction, under a
 * transaction-level advisory lock so runners starting together migrate once.
 * When it is current nothing is created, so a role with only the runtime
 * grants (README: Fleet) can use a schema its owner migrated.
 */
export async function migratePostgres(client: pg.ClientBase, location: PostgresLocation): Promise<void> {
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, MIGRATION_LOCK]);
    const found = await client.query<{ exists: boolean }>(`SELECT to_regclass('offload.schema_version') IS NOT NULL AS exists`);
    let version = 0;
    if (found.rows[0]!.exists) {
      const row = await client.query<{ version: number }>('SELECT max(version) AS version FROM offload.schema_version');
      version = row.rows[0]?.version ?? 0;
    }
    if (version > POSTGRES_SCHEMA_VERSION) {
      throw new StateUnavailableError(
        `the shared state at ${location.display} has schema version ${version}, newer than this offload understands (${POSTGRES_SCHEMA_VERSION}); upgrade offload on this machine`,
      );
    }
    if (version < POSTGRES_SCHEMA_VERSION) {
      const schema = await client.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'offload'`);
      if (schema.rowCount === 0) await client.query('CREATE SCHEMA offload');
      for (let v = version; v < POSTGRES_SCHEMA_VERSION; v++) await client.query(MIGRATIONS[v]!);
      await client.query('DELETE FROM offload.schema_version');
      await client.query('INSERT INTO offload.schema_version (version) VALUES ($1)', [POSTGRES_SCHEMA_VERSION]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (error instanceof StateUnavailableError) throw error;
    const denied = (error as { code?: string }).code === '42501';
    const hint = denied ? ' (the first run needs a role that may create the schema "offload": see the README, Fleet)' : '';
    throw new StateUnavailableError(`${stateErrorMessage(location, 'cannot set up', error)}${hint}`, { cause: error });
  }
}
