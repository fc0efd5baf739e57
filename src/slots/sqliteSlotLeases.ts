import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { cacheFilePath, openCacheDatabase } from '../cache/cacheDatabase.js';
import { currentBootId, currentProcessIdentity, isProcessAlive, type ProcessIdentity } from './processAlive.js';
import { grantSlots, waitingAfter, type HostSlotState } from './slotGrants.js';
import { checkRequest, SlotLeaseError, type SlotExchange, type SlotLease, type SlotLeases } from './slotLeases.js';

export interface SqliteSlotLeasesOptions {
  /** The SQLite file every offload process of the user shares; default defaultSlotLeasesPath(). */
  file?: string;
}

export function defaultSlotLeasesPath(env: NodeJS.ProcessEnv = process.env): string {
  return cacheFilePath('slots.sqlite', env);
}

/** Version 2 replaced the arrival-order tickets of version 1 by prioritised waiters. */
const SCHEMA_VERSION = 2;
/** No process can announce a release to another here: a waiting run looks again this often. */
const RECHECK_MS = 250;

interface OwnerRow {
  pid: number;
  startTime: string | null;
  bootId: string | null;
  owner: string;
}

/** Instances whose leases must go when the process exits normally. */
const openInstances = new Set<SqliteSlotLeases>();
function releaseAllAtExit(): void {
  for (const leases of openInstances) leases.closeNow();
}

/**
 * Slot leases of the offload processes of one machine, in a SQLite file of
 * the user (what Nix's build-remote does with flock'ed current-load files).
 *
 * A lease is a row (host, slot) stamped with its owner's pid, process start
 * time and boot id; a waiting claim is a row (host, owner, priority). Every
 * exchange runs in an IMMEDIATE transaction that first drops the rows of
 * owners no longer running, so a crashed or SIGKILLed offload cannot keep
 * slots. A clean exit deletes them at once.
 */
export class SqliteSlotLeases implements SlotLeases {
  readonly location: string;
  readonly recheckMs = RECHECK_MS;
  private readonly db: Database.Database;
  /** Distinguishes this instance's rows from other instances in the same process. */
  private readonly owner = randomUUID();
  private readonly self: ProcessIdentity = currentProcessIdentity();
  private readonly bootId = currentBootId();
  private closed = false;
  /** Prepared once: every dispatch runs these, and preparing costs more than running them. */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(options: SqliteSlotLeasesOptions = {}) {
    this.location = options.file ?? defaultSlotLeasesPath();
    this.db = openCacheDatabase(this.location, 'the build slot leases', (message, cause) => new SlotLeaseError(message, { cause }), { version: SCHEMA_VERSION, migrate: (db) => this.migrate(db) });
    if (openInstances.size === 0) process.on('exit', releaseAllAtExit);
    openInstances.add(this);
  }

  async exchange(step: SlotExchange): Promise<Array<SlotLease | undefined>> {
    for (const request of step.requests) checkRequest(request);
    this.checkOpen();
    try {
      return this.db
        .transaction(() => {
          const released = new Map<string, number[]>();
          for (const lease of step.release) {
            this.sql('DELETE FROM leases WHERE host = ? AND slot = ? AND owner = ?').run(lease.host, lease.slot, this.owner);
            released.set(lease.host, [...(released.get(lease.host) ?? []), lease.slot]);
          }
          const hosts = new Map<string, HostSlotState>();
          for (const host of new Set(step.requests.map((r) => r.host))) {
            const waiters = this.liveRows(host, 'waiters');
            const mine = waiters.find((row) => row.owner === this.owner);
            hosts.set(host, {
              used: new Set(this.liveRows(host, 'leases').map((row) => row.slot!)),
              waiting: waiters.filter((row) => row.owner !== this.owner).map((row) => ({ priority: row.priority!, since: row.since! })),
              ...(mine ? { mySince: mine.since! } : {}),
            });
          }
          const grants = grantSlots(step.requests, hosts, released);
          const leases = grants.map((grant, i) => {
            if (!grant) return undefined;
            const host = step.requests[i]!.host;
            this.sql(
              `INSERT INTO leases (host, slot, pid, start_time, boot_id, owner, acquired_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
            ).run(host, grant.slot, this.self.pid, this.self.startTime, this.self.bootId, this.owner, Date.now());
            return { host, slot: grant.slot };
          });
          this.setWaiting(waitingAfter(step.waiting, step.requests, grants));
          return leases;
        })
        .immediate();
    } catch (error) {
      throw this.wrapError(error);
    }
  }

  async inUse(host: string): Promise<number> {
    this.checkOpen();
    try {
      return this.db.transaction(() => this.liveRows(host, 'leases').length).immediate();
    } catch (error) {
      throw this.wrapError(error);
    }
  }

  onFreed(): () => void {
    return () => undefined;
  }

  async close(): Promise<void> {
    this.closeNow();
  }

  /** Synchronous, so that it also runs on process exit. */
  closeNow(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.db.transaction(() => {
        this.sql('DELETE FROM leases WHERE owner = ?').run(this.owner);
        this.sql('DELETE FROM waiters WHERE owner = ?').run(this.owner);
      })();
    } finally {
      this.db.close();
      openInstances.delete(this);
      if (openInstances.size === 0) process.off('exit', releaseAllAtExit);
    }
  }

  /** Keeps `since` of hosts still waited for, so equal priorities are served in arrival order. */
  private setWaiting(waiting: ReadonlyMap<string, number>): void {
    const mine = this.sql('SELECT host FROM waiters WHERE owner = ?').all(this.owner) as { host: string }[];
    for (const { host } of mine) {
      if (!waiting.has(host)) this.sql('DELETE FROM waiters WHERE owner = ? AND host = ?').run(this.owner, host);
    }
    for (const [host, priority] of waiting) {
      this.sql(
        `INSERT INTO waiters (host, owner, pid, start_time, boot_id, priority, since) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (host, owner) DO UPDATE SET priority = excluded.priority`,
        // Sub-millisecond, so two runners that start waiting in the same millisecond still have an order.
      ).run(host, this.owner, this.self.pid, this.self.startTime, this.self.bootId, priority, performance.timeOrigin + performance.now());
    }
  }

  /** The host's rows whose owner still runs, after deleting the others. Call inside a write transaction. */
  private liveRows(host: string, table: 'leases' | 'waiters'): Array<OwnerRow & { slot?: number; priority?: number; since?: number }> {
    const columns = table === 'leases' ? 'slot' : 'priority, since';
    const rows = this.sql(`SELECT ${columns}, pid, start_time AS startTime, boot_id AS bootId, owner FROM ${table} WHERE host = ?`).all(host) as Array<
      OwnerRow & { slot?: number; priority?: number; since?: number }
    >;
    const live = [];
    for (const row of rows) {
      if (this.ownerAlive(row)) live.push(row);
      else this.sql(`DELETE FROM ${table} WHERE host = ? AND owner = ?`).run(host, row.owner);
      // (A dead owner's rows on other hosts go when those hosts are looked at.)
    }
    return live;
  }

  private ownerAlive(row: OwnerRow): boolean {
    // Rows of this process are alive by definition, unless they are from an earlier process with our pid.
    if (row.pid === this.self.pid && row.startTime === this.self.startTime && row.bootId === this.self.bootId) return true;
    return isProcessAlive(row, this.bootId);
  }

  private checkOpen(): void {
    if (this.closed) throw new SlotLeaseError(`the build slot leases at ${this.location} are closed`);
  }

  private wrapError(error: unknown): unknown {
    if (error instanceof SlotLeaseError || error instanceof RangeError) return error;
    return new SlotLeaseError(`cannot use the build slot leases at ${this.location}: ${(error as Error).message}`, { cause: error });
  }

  private sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  private migrate(db: Database.Database): void {
    const upgrade = db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new SlotLeaseError(
          `the build slot leases at ${this.location} have schema version ${version}, newer than this offload understands (${SCHEMA_VERSION}); upgrade offload or set XDG_CACHE_HOME elsewhere`,
        );
      }
      if (version < 1) {
        db.exec(`
          CREATE TABLE leases (
            host TEXT NOT NULL,
            slot INTEGER NOT NULL,
            pid INTEGER NOT NULL,
            start_time TEXT,
            boot_id TEXT,
            owner TEXT NOT NULL,
            acquired_at INTEGER NOT NULL,
            PRIMARY KEY (host, slot)
          );
          CREATE INDEX leases_by_owner ON leases (owner);
        `);
      }
      if (version < 2) {
        db.exec(`
          DROP TABLE IF EXISTS tickets;
          -- Runners waiting for a host, with the remaining critical path of their best job there.
          CREATE TABLE waiters (
            host TEXT NOT NULL,
            owner TEXT NOT NULL,
            pid INTEGER NOT NULL,
            start_time TEXT,
            boot_id TEXT,
            priority REAL NOT NULL,
            since REAL NOT NULL,
            PRIMARY KEY (host, owner)
          );
        `);
      }
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    // IMMEDIATE: two processes opening a fresh file must not both create the table.
    upgrade.immediate();
  }
}
