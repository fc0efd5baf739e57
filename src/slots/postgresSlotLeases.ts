import { randomInt, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import PQueue from 'p-queue';
import type pg from 'pg';
import { connectClient, isConnectionError, StateUnavailableError, unavailable, type PostgresLocation } from '../state/postgresConnection.js';
import { DISPATCH_LOCK, LOCK_SPACE, migratePostgres, RUNNER_LOCK_SPACE } from '../state/postgresSchema.js';
import { grantSlots, waitingAfter, type HostSlotState } from './slotGrants.js';
import { checkRequest, type SlotExchange, type SlotLease, type SlotLeases } from './slotLeases.js';

/** A runner's heartbeat; it bridges short disconnections of its session. */
const HEARTBEAT_MS = 1_000;
/** A runner whose session lock is gone stays alive this long after its last heartbeat. */
const GRACE_SECONDS = 3;
/** After the server (re)starts, every runner gets this long to reconnect before its slots count as free. */
export const RESTART_GRACE_SECONDS = 15;
/** Back-off between reconnect attempts; its cap must stay well under RESTART_GRACE_SECONDS. */
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 1_000;
/** A waiting runner looks again this often on its own: a SIGKILLed runner cannot announce its death. */
const RECHECK_MS = 1_000;
const CHANNEL = 'offload_slots';

/** A runner is alive while its session holds its advisory lock, or within the graces. */
const LIVE = `(
  EXISTS (SELECT 1 FROM pg_locks l
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.classid::bigint = ${RUNNER_LOCK_SPACE} AND l.objid::bigint = r.lock_key)
  OR r.seen_at > now() - interval '${GRACE_SECONDS} seconds'
  OR pg_postmaster_start_time() > now() - interval '${RESTART_GRACE_SECONDS} seconds'
)`;

export interface PostgresSlotLeasesOptions {
  /** Connection lost and back, for the run's log. */
  onConnection?: (event: 'lost' | 'back', message: string) => void;
}

/**
 * Slot leases of a fleet of runners in PostgreSQL.
 *
 * Each runner keeps one session (its own connection, not the pool's) that
 * holds a session-level advisory lock, LISTENs for freed slots and runs every
 * statement of the runner in order (p-queue, one at a time). The lock is what
 * keeps the runner's leases alive: when its process dies, even by SIGKILL, the
 * server ends the session, the lock goes, and within the grace the leases are
 * dropped by the next exchange of any runner. The heartbeat and the restart
 * grace keep a PostgreSQL restart from freeing every slot at once: running
 * builds keep their leases while their runners reconnect.
 *
 * Exchanges serialise on a transaction-level advisory lock, so two runners
 * never count the same free slot; a release NOTIFYs the runners first in
 * line for the host, as many as slots came free.
 *
 * While the server is away, exchange() fails with StateUnavailableError (the
 * executor then starts nothing new), releases wait (as they do after any
 * failed exchange), and the session
 * reconnects with back-off; once back, it takes its lock again, drops leases
 * it never learned it had (a grant whose answer was lost) and keeps those its
 * builds still use.
 */
export class PostgresSlotLeases implements SlotLeases {
  readonly location: string;
  readonly recheckMs = RECHECK_MS;
  private readonly id = randomUUID();
  private lockKey = randomInt(0, 2 ** 31 - 1);
  private session: pg.Client | undefined;
  private readonly queue = new PQueue({ concurrency: 1 });
  /** Leases this runner holds, `host\0slot` → lease. */
  private readonly held = new Map<string, SlotLease>();
  /** Released while the server was away; deleted once it is back. */
  private readonly unreleased: SlotLease[] = [];
  private readonly freedListeners = new Set<(host?: string) => void>();
  private heartbeat: NodeJS.Timeout | undefined;
  private reconnecting: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly where: PostgresLocation,
    private readonly options: PostgresSlotLeasesOptions,
  ) {
    this.location = where.display;
  }

  static async open(location: PostgresLocation, options: PostgresSlotLeasesOptions = {}): Promise<PostgresSlotLeases> {
    const leases = new PostgresSlotLeases(location, options);
    await leases.connect(true);
    leases.heartbeat = setInterval(() => leases.beat(), HEARTBEAT_MS);
    leases.heartbeat.unref();
    return leases;
  }

  async exchange(step: SlotExchange): Promise<Array<SlotLease | undefined>> {
    for (const request of step.requests) checkRequest(request);
    if (this.closed) throw new StateUnavailableError(`the build slot leases at ${this.location} are closed`);
    for (const lease of step.release) this.held.delete(leaseKey(lease));
    if (!this.session) {
      this.unreleased.push(...step.release);
      throw this.away();
    }
    // Releases a failed exchange could not make go with this one.
    const release = [...this.unreleased.splice(0), ...step.release];
    return this.run(async (c) => {
      await c.query('BEGIN');
      try {
        const result = await this.exchangeIn(c, { ...step, release });
        await c.query('COMMIT');
        for (const lease of result) if (lease) this.held.set(leaseKey(lease), lease);
        return result;
      } catch (error) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    }).catch((error: unknown) => {
      // The releases did not happen (rolled back, or the server went away): a leaked lease would
      // take a builder's slot from the whole fleet until this runner ends. The next exchange, or
      // the reconciliation after a reconnect, makes them.
      this.unreleased.push(...release);
      throw error;
    });
  }

  async inUse(host: string): Promise<number> {
    return this.run(async (c) => {
      const rows = await c.query<{ n: string }>(
        `SELECT count(*) AS n FROM offload.slot_leases s JOIN offload.runners r ON r.id = s.runner WHERE s.host = $1 AND ${LIVE}`,
        [host],
      );
      return Number(rows.rows[0]!.n);
    });
  }

  onFreed(listener: (host?: string) => void): () => void {
    this.freedListeners.add(listener);
    return () => this.freedListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    const session = this.session;
    if (!session) return;
    try {
      await this.queue.add(async () => {
        const hosts = await session.query<{ host: string }>(
          `WITH gone AS (DELETE FROM offload.slot_leases WHERE runner = $1 RETURNING host)
           SELECT DISTINCT host FROM gone`,
          [this.id],
        );
        await session.query('DELETE FROM offload.runners WHERE id = $1', [this.id]);
        for (const { host } of hosts.rows) await session.query('SELECT pg_notify($1, $2)', [CHANNEL, host]);
      });
    } catch {
      // The session's end frees the lock; the leases go after the grace.
    } finally {
      this.session = undefined;
      await session.end().catch(() => undefined);
    }
  }

  private async exchangeIn(c: pg.Client, step: SlotExchange): Promise<Array<SlotLease | undefined>> {
    await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, DISPATCH_LOCK]);
    await c.query(`DELETE FROM offload.runners r WHERE r.id <> $1 AND NOT ${LIVE}`, [this.id]);
    const released = new Map<string, number[]>();
    for (const lease of step.release) released.set(lease.host, [...(released.get(lease.host) ?? []), lease.slot]);
    if (step.release.length > 0) {
      await c.query(
        `DELETE FROM offload.slot_leases WHERE runner = $1 AND (host, slot) IN (SELECT * FROM unnest($2::text[], $3::int[]))`,
        [this.id, step.release.map((l) => l.host), step.release.map((l) => l.slot)],
      );
    }
    const requested = [...new Set(step.requests.map((r) => r.host))];
    const hosts = new Map<string, HostSlotState>(requested.map((h) => [h, { used: new Set<number>(), waiting: [] }]));
    if (requested.length > 0) {
      const leases = await c.query<{ host: string; slot: number }>('SELECT host, slot FROM offload.slot_leases WHERE host = ANY($1::text[])', [requested]);
      for (const row of leases.rows) hosts.get(row.host)!.used.add(row.slot);
      const waiters = await c.query<{ host: string; runner: string; priority: number; since: Date }>(
        'SELECT host, runner, priority, since FROM offload.slot_waiters WHERE host = ANY($1::text[])',
        [requested],
      );
      for (const row of waiters.rows) {
        const state = hosts.get(row.host)!;
        if (row.runner === this.id) state.mySince = row.since.getTime();
        else state.waiting.push({ priority: row.priority, since: row.since.getTime() });
      }
    }
    const grants = grantSlots(step.requests, hosts, released);
    const granted: Array<SlotLease | undefined> = grants.map((g, i) => (g ? { host: step.requests[i]!.host, slot: g.slot } : undefined));
    const taken = granted.filter((l): l is SlotLease => l !== undefined);
    if (taken.length > 0) {
      await c.query(
        `INSERT INTO offload.slot_leases (host, slot, runner, acquired_at) SELECT h, s, $1, now() FROM unnest($2::text[], $3::int[]) AS t(h, s)`,
        [this.id, taken.map((l) => l.host), taken.map((l) => l.slot)],
      );
    }
    const stoppedWaiting = await this.setWaiting(c, waitingAfter(step.waiting, step.requests, grants));
    // Hosts where a slot came free, or where this runner no longer stands in line: someone else may now go.
    const reused = new Set(taken.map((l) => `${l.host}\0${l.slot}`));
    const freed = new Map<string, number>();
    for (const l of step.release) if (!reused.has(`${l.host}\0${l.slot}`)) freed.set(l.host, (freed.get(l.host) ?? 0) + 1);
    for (const host of stoppedWaiting) freed.set(host, (freed.get(host) ?? 0) + 1);
    await this.wakeFirstInLine(c, freed);
    return granted;
  }

  /**
   * Wakes, for each host, as many runners as slots came free there: those
   * first in line (highest priority, then longest wait). Waking every waiter
   * would make all of them exchange for a slot only one can have: with a
   * dozen runners that herd, serialised on the dispatch lock, costs more than
   * the builds. A woken runner that no longer wants the slot drops its claim,
   * which wakes the next; a dead one is passed over at the others' next look.
   */
  private async wakeFirstInLine(c: pg.Client, freed: ReadonlyMap<string, number>): Promise<void> {
    for (const [host, count] of freed) {
      const next = await c.query<{ runner: string }>(
        'SELECT runner FROM offload.slot_waiters WHERE host = $1 AND runner <> $2 ORDER BY priority DESC, since ASC LIMIT $3',
        [host, this.id, count],
      );
      if (next.rows.length > 0) await c.query('SELECT pg_notify($1, $2)', [CHANNEL, `${host}\n${next.rows.map((r) => r.runner).join(',')}`]);
    }
  }

  /** Replaces this runner's waiting claims; returns the hosts it stopped waiting for or now waits for with less priority. */
  private async setWaiting(c: pg.Client, waiting: ReadonlyMap<string, number>): Promise<string[]> {
    const before = await c.query<{ host: string; priority: number }>('SELECT host, priority FROM offload.slot_waiters WHERE runner = $1', [this.id]);
    const changed = before.rows.filter((row) => !waiting.has(row.host) || waiting.get(row.host)! < row.priority).map((row) => row.host);
    const gone = before.rows.filter((row) => !waiting.has(row.host)).map((row) => row.host);
    if (gone.length > 0) await c.query('DELETE FROM offload.slot_waiters WHERE runner = $1 AND host = ANY($2::text[])', [this.id, gone]);
    if (waiting.size > 0) {
      await c.query(
        `INSERT INTO offload.slot_waiters (runner, host, priority, since) SELECT $1, h, p, clock_timestamp() FROM unnest($2::text[], $3::float8[]) AS t(h, p)
         ON CONFLICT (runner, host) DO UPDATE SET priority = excluded.priority`,
        [this.id, [...waiting.keys()], [...waiting.values()]],
      );
    }
    return changed;
  }

  /** Runs on the session, in order with every other statement of this runner. */
  private run<T>(work: (c: pg.Client) => Promise<T>): Promise<T> {
    return this.queue.add(async () => {
      const session = this.session;
      if (!session) throw this.away();
      try {
        return await work(session);
      } catch (error) {
        if (isConnectionError(error)) {
          this.lost(session, error);
          throw unavailable(this.where, 'lost the connection to', error);
        }
        throw unavailable(this.where, 'cannot use', error);
      }
    }) as Promise<T>;
  }

  private away(): StateUnavailableError {
    return new StateUnavailableError(`the shared state at ${this.location} is not reachable; waiting for it to come back`);
  }

  private async connect(first: boolean): Promise<void> {
    const client = await connectClient(this.where);
    try {
      client.on('error', (error) => this.lost(client, error));
      client.on('end', () => this.lost(client, new Error('the server closed the connection')));
      client.on('notification', (message) => {
        // `host`: for every runner; `host\nrunner,…`: for the runners named.
        const [host, to] = (message.payload ?? '').split('\n');
        if (to !== undefined && !to.split(',').includes(this.id)) return;
        for (const listener of this.freedListeners) listener(host || undefined);
      });
      // A client that stalls inside a transaction must not hold the dispatch lock for long;
      // a machine that vanishes must lose its session (and so its slots) within half a minute.
      await client.query(
        `SET idle_in_transaction_session_timeout = '10s'; SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3`,
      );
      if (first) await migratePostgres(client, this.where);
      await this.register(client);
      await client.query(`LISTEN ${CHANNEL}`);
      await this.reconcile(client);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw unavailable(this.where, 'cannot reach', error);
    }
    this.session = client;
  }

  /** Takes a session lock nobody holds and (re)writes this runner's row under it. */
  private async register(c: pg.Client): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const locked = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [RUNNER_LOCK_SPACE, this.lockKey]);
      if (locked.rows[0]!.ok) {
        try {
          await c.query(
            `INSERT INTO offload.runners (id, lock_key, hostname, pid, started_at, seen_at) VALUES ($1, $2, $3, $4, now(), now())
             ON CONFLICT (id) DO UPDATE SET lock_key = excluded.lock_key, seen_at = now()`,
            [this.id, this.lockKey, hostname(), process.pid],
          );
          return;
        } catch (error) {
          // Another (dead) runner's row still has this key: try another.
          if ((error as { code?: string }).code !== '23505' || attempt > 5) throw error;
          await c.query('SELECT pg_advisory_unlock($1, $2)', [RUNNER_LOCK_SPACE, this.lockKey]);
        }
      }
      if (attempt > 5) throw new Error('no free runner lock key');
      this.lockKey = randomInt(0, 2 ** 31 - 1);
    }
  }

  /**
   * After a reconnect: the rows of this runner must be exactly the leases it
   * holds. A lease granted in a transaction whose answer was lost is dropped;
   * a release made while away is applied; a held lease whose row vanished
   * (the runner counted as dead) is taken again if the slot is still free.
   */
  private async reconcile(c: pg.Client): Promise<void> {
    const pending = this.unreleased.splice(0);
    const held = [...this.held.values()];
    await c.query('BEGIN');
    try {
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, DISPATCH_LOCK]);
      await c.query(
        `DELETE FROM offload.slot_leases WHERE runner = $1 AND (host, slot) NOT IN (SELECT * FROM unnest($2::text[], $3::int[]))`,
        [this.id, held.map((l) => l.host), held.map((l) => l.slot)],
      );
      await c.query('DELETE FROM offload.slot_waiters WHERE runner = $1', [this.id]);
      const missing: SlotLease[] = [];
      for (const lease of held) {
        const kept = await c.query(
          `INSERT INTO offload.slot_leases (host, slot, runner, acquired_at) VALUES ($1, $2, $3, now()) ON CONFLICT (host, slot) DO NOTHING`,
          [lease.host, lease.slot, this.id],
        );
        const ours = await c.query('SELECT 1 FROM offload.slot_leases WHERE host = $1 AND slot = $2 AND runner = $3', [lease.host, lease.slot, this.id]);
        if (kept.rowCount === 0 && ours.rowCount === 0) missing.push(lease);
      }
      for (const host of new Set(pending.map((l) => l.host))) await c.query('SELECT pg_notify($1, $2)', [CHANNEL, host]);
      await c.query('COMMIT');
      for (const lease of missing) {
        this.options.onConnection?.(
          'back',
          `slot ${lease.slot} of ${lease.host} went to another runner while the shared state was away; that builder may run one build more than its maxJobs until ours ends`,
        );
      }
    } catch (error) {
      await c.query('ROLLBACK').catch(() => undefined);
      this.unreleased.push(...pending);
      throw error;
    }
  }

  private beat(): void {
    if (!this.session || this.closed || this.queue.size > 0) return;
    void this.run(async (c) => {
      const updated = await c.query('UPDATE offload.runners SET seen_at = now() WHERE id = $1', [this.id]);
      // Counted as dead (a long pause): register again and take back what is still ours.
      if (updated.rowCount === 0) {
        await this.register(c);
        await this.reconcile(c);
      }
    }).catch(() => undefined);
  }

  /** The session broke: forget it and reconnect with back-off until closed. */
  private lost(client: pg.Client, error: unknown): void {
    if (this.session !== client || this.closed) return;
    this.session = undefined;
    void client.end().catch(() => undefined);
    this.options.onConnection?.(
      'lost',
      `${unavailable(this.where, 'lost the connection to', error).message}; running builds go on, new ones wait until it is back`,
    );
    this.reconnecting ??= this.reconnect().finally(() => (this.reconnecting = undefined));
  }

  private async reconnect(): Promise<void> {
    let delay = RECONNECT_MIN_MS;
    while (!this.closed) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (this.closed) return;
      try {
        await this.connect(false);
        this.options.onConnection?.('back', `the shared state at ${this.location} is back`);
        for (const listener of this.freedListeners) listener();
        return;
      } catch {
        delay = Math.min(RECONNECT_MAX_MS, delay * 2);
      }
    }
  }
}

function leaseKey(lease: SlotLease): string {
  return `${lease.host}\0${lease.slot}`;
}
