import { randomUUID } from 'node:crypto';
import { cacheFilePath, openCacheDatabase } from '../cache/cacheDatabase.js';
import type Database from 'better-sqlite3';
import { OffloadError } from '../errors/offloadError.js';
import { currentBootId, currentProcessIdentity, isProcessAlive, type ProcessIdentity } from './processAlive.js';

/**
 * One build slot on one host, held by this process until released. The
 * executor takes one before it starts a job on a host (the local host is
 * `local`) and releases it when that job's build is over.
 */
export interface SlotLease {
  readonly host: string;
  /** 0-based; distinct among the live leases of a host. */
  readonly slot: number;
  /** Gives the slot back. Safe to call more than once, and after close(). */
  release(): void;
}

export interface SlotLeasesOptions {
  /** The SQLite file every offload process of the user shares; default defaultSlotLeasesPath(). */
  file?: string;
}

export class SlotLeaseError extends OffloadError {}

export function defaultSlotLeasesPath(env: NodeJS.ProcessEnv = process.env): string {
  return cacheFilePath('slots.sqlite', env);
}

const SCHEMA_VERSION = 1;
/** Transactions here take microseconds; waiting this long for the lock means something is wrong. */
/** Another process's release is only seen by polling; back off from the first to the last delay. */
export const POLL_MIN_MS = 50;
export const POLL_MAX_MS = 250;
const POLL_GROWTH = 1.5;

interface OwnerRow {
  pid: number;
  startTime: string | null;
  bootId: string | null;
  owner: string;
}

interface LeaseRow extends OwnerRow {
  slot: number;
}

interface TicketRow extends OwnerRow {
  id: number;
}

interface Waiter {
  host: string;
  maxJobs: number;
  /** Its place in the queue all processes share for this host. */
  ticket: number;
  resolve: (lease: SlotLease) => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** Instances whose leases must go when the process exits normally. */
const openInstances = new Set<SlotLeases>();
function releaseAllAtExit(): void {
  for (const leases of openInstances) leases.close();
}

/**
 * Build slots shared by every offload process on this machine, so two
 * `offload build` runs together never start more than a host's maxJobs builds
 * on it (what Nix's build-remote does with flock'ed current-load files).
 *
 * A lease is a row (host, slot) in a SQLite file, stamped with its owner's
 * pid, process start time and boot id. Granting happens in an IMMEDIATE
 * transaction that first deletes the rows of owners no longer running, so a
 * crashed or SIGKILLed offload cannot keep slots: its leases vanish on the
 * next grant for that host. A clean exit deletes them at once.
 *
 * Fairness: a waiting acquire holds a ticket in a queue all processes share
 * per host, and a free slot goes to the oldest live ticket. So a run that
 * releases and re-acquires cannot starve another run waiting for that host.
 *
 * Waiting: a release in this process serves this process's tickets at once;
 * other processes' releases and deaths are noticed by one poll per instance
 * (every 50 ms growing to 250 ms), which only takes the write lock once a read
 * shows that one of its tickets may be served.
 *
 * Use: one instance per run, closed when the run ends. Per job, on its host
 * (LOCAL_HOST for this machine), with the run's AbortSignal:
 *   const lease = await slots.acquire(host.id, host.maxJobs, signal);
 *   try { ...build... } finally { lease.release(); }
 * A host with maxJobs 0 has no slots to lease (acquire throws RangeError).
 */
export class SlotLeases {
  readonly path: string;
  private readonly db: Database.Database;
  /** Distinguishes this instance's rows from other instances in the same process. */
  private readonly owner = randomUUID();
  private readonly self: ProcessIdentity = currentProcessIdentity();
  private readonly bootId = currentBootId();
  private readonly waiters: Waiter[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private pollDelay = POLL_MIN_MS;
  private closed = false;
  /** Prepared once: every dispatch runs these, and preparing costs more than running them. */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(options: SlotLeasesOptions = {}) {
    const path = options.file ?? defaultSlotLeasesPath();
    this.path = path;
    this.db = openCacheDatabase(path, 'the build slot leases', (message, cause) => new SlotLeaseError(message, undefined, { cause }), (db) => this.migrate(db));
    if (openInstances.size === 0) process.on('exit', releaseAllAtExit);
    openInstances.add(this);
  }

  /**
   * A slot on `host`, waiting (behind earlier waiters of every process) until
   * one of its `maxJobs` slots is free. Rejects with the signal's reason when
   * `signal` aborts first, and with a SlotLeaseError when this instance is
   * closed first or the file cannot be used.
   */
  acquire(host: string, maxJobs: number, signal?: AbortSignal): Promise<SlotLease> {
    checkMaxJobs(host, maxJobs);
    if (this.closed) return Promise.reject(this.closedError());
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<SlotLease>((resolve, reject) => {
      let ticket: number;
      try {
        ticket = this.takeTicket(host);
      } catch (error) {
        reject(this.wrapError(host, error));
        return;
      }
      const waiter: Waiter = { host, maxJobs, ticket, resolve, reject };
      this.waiters.push(waiter);
      if (signal) {
        waiter.signal = signal;
        waiter.onAbort = () => this.abandon(waiter, signal.reason);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.serveOrFail(host);
      this.pollDelay = POLL_MIN_MS;
      this.schedulePoll();
    });
  }

  /** A slot on `host` if one is free now and no process is already waiting for one, else undefined. */
  tryAcquire(host: string, maxJobs: number): SlotLease | undefined {
    checkMaxJobs(host, maxJobs);
    if (this.closed) throw this.closedError();
    try {
      const slot = this.db
        .transaction(() => {
          const used = new Set(this.liveLeases(host).map((row) => row.slot));
          if (used.size + this.liveTickets(host).length >= maxJobs) return undefined;
          const free = lowestFree(used);
          this.insertLease(host, free);
          return free;
        })
        .immediate();
      return slot === undefined ? undefined : this.lease(host, slot);
    } catch (error) {
      throw this.wrapError(host, error);
    }
  }

  /** Slots of `host` held by live processes (all offload processes, not just this one). */
  inUse(host: string): number {
    if (this.closed) throw this.closedError();
    try {
      return this.db.transaction(() => this.liveLeases(host).length).immediate();
    } catch (error) {
      throw this.wrapError(host, error);
    }
  }

  /**
   * Releases this instance's leases and rejects its waiters. Also runs on
   * process exit; leases of processes that die without it are reclaimed by
   * the liveness check.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopPolling();
    for (const waiter of this.waiters.splice(0)) {
      this.detach(waiter);
      waiter.reject(this.closedError());
    }
    try {
      this.db.transaction(() => {
        this.sql('DELETE FROM leases WHERE owner = ?').run(this.owner);
        this.sql('DELETE FROM tickets WHERE owner = ?').run(this.owner);
      })();
    } finally {
      this.db.close();
      openInstances.delete(this);
      if (openInstances.size === 0) process.off('exit', releaseAllAtExit);
    }
  }

  private takeTicket(host: string): number {
    const result = this.sql('INSERT INTO tickets (host, pid, start_time, boot_id, owner) VALUES (?, ?, ?, ?, ?)')
      .run(host, this.self.pid, this.self.startTime, this.self.bootId, this.owner);
    return Number(result.lastInsertRowid);
  }

  /**
   * Grants free slots of `host` to this instance's tickets for it, oldest
   * first, leaving room for older tickets of other processes (they take
   * their slot on their next poll).
   */
  private serve(host: string): void {
    const mine = new Map(this.waiters.filter((w) => w.host === host).map((w) => [w.ticket, w]));
    if (mine.size === 0) return;
    const granted = this.db
      .transaction(() => {
        const used = new Set(this.liveLeases(host).map((row) => row.slot));
        const grants: Array<{ waiter: Waiter; slot: number }> = [];
        let ahead = 0;
        for (const ticket of this.liveTickets(host)) {
          const waiter = mine.get(ticket.id);
          if (waiter === undefined || used.size + ahead >= waiter.maxJobs) {
            ahead++;
            continue;
          }
          const slot = lowestFree(used);
          this.insertLease(host, slot);
          this.sql('DELETE FROM tickets WHERE id = ?').run(ticket.id);
          used.add(slot);
          grants.push({ waiter, slot });
        }
        return grants;
      })
      .immediate();
    for (const { waiter, slot } of granted) {
      this.removeWaiter(waiter);
      waiter.resolve(this.lease(host, slot));
    }
  }

  private serveOrFail(host: string): void {
    try {
      this.serve(host);
    } catch (error) {
      this.failWaiters(host, error);
    }
  }

  /** The host's leases after deleting those whose owner is gone. Call inside a write transaction. */
  private liveLeases(host: string): LeaseRow[] {
    const { live, dead } = this.byLiveness(this.readLeases(host));
    const drop = this.sql('DELETE FROM leases WHERE host = ? AND slot = ? AND owner = ?');
    for (const row of dead) drop.run(host, row.slot, row.owner);
    return live;
  }

  /** The host's waiting tickets, oldest first, after deleting those whose owner is gone. Call inside a write transaction. */
  private liveTickets(host: string): TicketRow[] {
    const { live, dead } = this.byLiveness(this.readTickets(host));
    const drop = this.sql('DELETE FROM tickets WHERE id = ?');
    for (const row of dead) drop.run(row.id);
    return live;
  }

  private byLiveness<Row extends OwnerRow>(rows: Row[]): { live: Row[]; dead: Row[] } {
    const live: Row[] = [];
    const dead: Row[] = [];
    for (const row of rows) (this.ownerAlive(row) ? live : dead).push(row);
    return { live, dead };
  }

  private readLeases(host: string): LeaseRow[] {
    return this.sql('SELECT slot, pid, start_time AS startTime, boot_id AS bootId, owner FROM leases WHERE host = ?').all(host) as LeaseRow[];
  }

  private readTickets(host: string): TicketRow[] {
    return this.sql('SELECT id, pid, start_time AS startTime, boot_id AS bootId, owner FROM tickets WHERE host = ? ORDER BY id').all(host) as TicketRow[];
  }

  private ownerAlive(row: OwnerRow): boolean {
    // Rows of this process are alive by definition, unless they are from an earlier process with our pid.
    if (row.pid === this.self.pid && row.startTime === this.self.startTime && row.bootId === this.self.bootId) return true;
    return isProcessAlive(row, this.bootId);
  }

  private insertLease(host: string, slot: number): void {
    this.sql(
      `INSERT INTO leases (host, slot, pid, start_time, boot_id, owner, acquired_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(host, slot, this.self.pid, this.self.startTime, this.self.bootId, this.owner, Date.now());
  }

  private lease(host: string, slot: number): SlotLease {
    let released = false;
    return {
      host,
      slot,
      release: () => {
        if (released) return;
        released = true;
        if (this.closed) return;
        try {
          this.sql('DELETE FROM leases WHERE host = ? AND slot = ? AND owner = ?').run(host, slot, this.owner);
        } catch (error) {
          // Release runs in cleanup paths and must not throw; the row goes at close or exit,
          // and whoever waits for this host learns why.
          this.failWaiters(host, error);
          return;
        }
        this.serveOrFail(host);
      },
    };
  }

  /** Other processes' releases and deaths are only seen here. */
  private poll(): void {
    this.pollTimer = undefined;
    const before = this.waiters.length;
    for (const host of new Set(this.waiters.map((w) => w.host))) {
      if (this.mayServe(host)) this.serveOrFail(host);
    }
    this.pollDelay = this.waiters.length < before ? POLL_MIN_MS : Math.min(POLL_MAX_MS, this.pollDelay * POLL_GROWTH);
    this.schedulePoll();
  }

  /**
   * The same test serve() makes, on a read without the write lock, so that
   * while every slot is held by a live owner polling never blocks anyone.
   */
  private mayServe(host: string): boolean {
    try {
      const used = this.readLeases(host).filter((row) => this.ownerAlive(row)).length;
      const mine = new Map(this.waiters.filter((w) => w.host === host).map((w) => [w.ticket, w]));
      let ahead = 0;
      for (const ticket of this.readTickets(host)) {
        if (!this.ownerAlive(ticket)) continue;
        const waiter = mine.get(ticket.id);
        if (waiter !== undefined && used + ahead < waiter.maxJobs) return true;
        ahead++;
      }
      return false;
    } catch {
      // Let serve() take the lock and report the problem.
      return true;
    }
  }

  private schedulePoll(): void {
    if (this.closed || this.pollTimer !== undefined || this.waiters.length === 0) return;
    // Jitter keeps processes that started together from polling in lockstep.
    const delay = this.pollDelay * (0.8 + 0.4 * Math.random());
    this.pollTimer = setTimeout(() => this.poll(), delay);
  }

  private stopPolling(): void {
    if (this.pollTimer !== undefined) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
  }

  /** Gives up a waiter's place in the queue and rejects it. */
  private abandon(waiter: Waiter, reason: unknown): void {
    if (!this.waiters.includes(waiter)) return;
    this.removeWaiter(waiter);
    try {
      this.sql('DELETE FROM tickets WHERE id = ?').run(waiter.ticket);
    } catch {
      // The ticket dies with this process anyway.
    }
    waiter.reject(reason);
    // Our ticket may have been holding back later tickets of ours.
    this.serveOrFail(waiter.host);
  }

  private removeWaiter(waiter: Waiter): void {
    const index = this.waiters.indexOf(waiter);
    if (index >= 0) this.waiters.splice(index, 1);
    this.detach(waiter);
    if (this.waiters.length === 0) this.stopPolling();
  }

  private detach(waiter: Waiter): void {
    if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
  }

  private failWaiters(host: string, error: unknown): void {
    const reason = this.wrapError(host, error);
    for (const waiter of this.waiters.filter((w) => w.host === host)) {
      this.removeWaiter(waiter);
      waiter.reject(reason);
    }
  }

  private wrapError(host: string, error: unknown): OffloadError {
    if (error instanceof OffloadError) return error;
    return new SlotLeaseError(`cannot take a build slot on ${host} from ${this.path}: ${(error as Error).message}`, undefined, {
      cause: error,
    });
  }

  private sql(text: string): Database.Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  private closedError(): SlotLeaseError {
    return new SlotLeaseError(`the build slot leases at ${this.path} are closed`);
  }

  private migrate(db: Database.Database): void {
    const upgrade = db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new SlotLeaseError(
          `the build slot leases at ${this.path} have schema version ${version}, newer than this offload understands (${SCHEMA_VERSION}); upgrade offload or set XDG_CACHE_HOME elsewhere`,
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
          -- Waiting acquires, in arrival order across processes.
          CREATE TABLE tickets (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            start_time TEXT,
            boot_id TEXT,
            owner TEXT NOT NULL
          );
          CREATE INDEX tickets_by_host ON tickets (host, id);
        `);
      }
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    // IMMEDIATE: two processes opening a fresh file must not both create the table.
    upgrade.immediate();
  }
}

function checkMaxJobs(host: string, maxJobs: number): void {
  // A host with 0 slots never gets a lease; waiting for one would hang forever.
  if (!Number.isSafeInteger(maxJobs) || maxJobs < 1) {
    throw new RangeError(`a build slot on ${host} needs maxJobs of at least 1, got ${maxJobs}`);
  }
}

function lowestFree(used: Set<number>): number {
  let slot = 0;
  while (used.has(slot)) slot++;
  return slot;
}
