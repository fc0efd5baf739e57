import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresBuildHistory } from '../../src/history/postgresBuildHistory.js';
import { PostgresSlotLeases, RESTART_GRACE_SECONDS } from '../../src/slots/postgresSlotLeases.js';
import { StateUnavailableError } from '../../src/state/postgresConnection.js';
import { parseStateUrl } from '../../src/state/stateLocation.js';
import { startPostgres, type PostgresServer } from '../../scripts/cluster/postgresServer.js';
import { freePort } from '../../scripts/cluster/ports.js';
import { describeHistoryContract } from '../support/historyContract.js';
import { describeSlotLeasesContract } from '../support/slotLeasesContract.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { offload } from './buildSupport.js';

/**
 * The shared state on a real PostgreSQL server (a private one, started for
 * this file): the same contracts as the SQLite stores, then what only a
 * server can do wrong: be unreachable, be newer, restart under a runner.
 */
const enabled = integrationPrereqs();
let server: PostgresServer;
/** Taken once the server answers, so never before its postmaster started. */
let serverUpAt = 0;
let databases = 0;

/** A fresh database owned by the offload role: each contract test starts from nothing. */
function freshUrl(): string {
  const name = `t${++databases}`;
  server.superuser(`CREATE DATABASE ${name} OWNER offload`);
  return server.url.replace(/\/offload$/, `/${name}`);
}
const location = (url: string) => parseStateUrl(url, 'test') as Extract<ReturnType<typeof parseStateUrl>, { kind: 'postgres' }>;

describe.runIf(enabled)('shared state in PostgreSQL', () => {
  beforeAll(async () => {
    server = await startPostgres('state');
    serverUpAt = Date.now();
  });
  afterAll(async () => {
    await server?.dispose();
  });

  let historyUrl: string;
  describeHistoryContract('PostgreSQL', () => ({
    async open() {
      historyUrl = freshUrl();
      return PostgresBuildHistory.open(location(historyUrl));
    },
    openAgain: () => PostgresBuildHistory.open(location(historyUrl)),
  }));

  describeSlotLeasesContract('PostgreSQL', () => {
    const url = freshUrl();
    return {
      runner: () => PostgresSlotLeases.open(location(url)),
      store: () => url,
      pastStartGrace: () => delay(Math.max(0, serverUpAt + RESTART_GRACE_SECONDS * 1_000 + 500 - Date.now())),
    };
  });

  it('wakes a waiting runner when a slot is released (LISTEN/NOTIFY)', async () => {
    const url = freshUrl();
    const a = await PostgresSlotLeases.open(location(url));
    const b = await PostgresSlotLeases.open(location(url));
    try {
      const [lease] = await a.exchange({ release: [], requests: [{ host: 'h', maxJobs: 1, priority: 1 }], waiting: new Map() });
      expect(await b.exchange({ release: [], requests: [{ host: 'h', maxJobs: 1, priority: 1 }], waiting: new Map() })).toEqual([undefined]);
      const woken = new Promise<string | undefined>((resolve) => b.onFreed(resolve));
      await a.exchange({ release: [lease!], requests: [], waiting: new Map() });
      expect(await woken).toBe('h');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('wakes only the runner first in line for a freed slot, then the next once that one has it', async () => {
    const url = freshUrl();
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => PostgresSlotLeases.open(location(url))));
    try {
      const ask = (leases: PostgresSlotLeases, priority: number) => leases.exchange({ release: [], requests: [{ host: 'h', maxJobs: 1, priority }], waiting: new Map() });
      const [lease] = await ask(a!, 1);
      expect(await ask(b!, 5)).toEqual([undefined]);
      expect(await ask(c!, 1)).toEqual([undefined]);
      const heard = { b: [] as Array<string | undefined>, c: [] as Array<string | undefined> };
      const next = (who: 'b' | 'c', leases: PostgresSlotLeases) => new Promise<void>((resolve) => leases.onFreed((host) => (heard[who].push(host), resolve())));
      const bWoken = next('b', b!);
      const cWoken = next('c', c!);
      await a!.exchange({ release: [lease!], requests: [], waiting: new Map() });
      await bWoken;
      // Notifications reach a session in order: once c hears this, it has heard everything sent before.
      server.superuser(`SELECT pg_notify('offload_slots', 'barrier')`, url.split('/').pop());
      await cWoken;
      // The barrier reaches every listener; before it, only b heard of the freed slot.
      expect(heard.c).toEqual(['barrier']);
      expect(heard.b[0]).toBe('h');
      const [bLease] = await ask(b!, 5);
      expect(bLease).toBeDefined();
      // b is done with it: now c, first in line, is woken.
      const cWokenAgain = new Promise<string | undefined>((resolve) => c!.onFreed(resolve));
      await b!.exchange({ release: [bLease!], requests: [], waiting: new Map() });
      expect(await cWokenAgain).toBe('h');
      expect(await ask(c!, 1)).toEqual([expect.objectContaining({ host: 'h' })]);
    } finally {
      for (const l of [a, b, c]) await l?.close();
    }
  });

  it('refuses a schema newer than it knows, naming the URL without its password', async () => {
    const url = freshUrl();
    const h = await PostgresBuildHistory.open(location(url));
    await h.close();
    server.superuser('UPDATE offload.schema_version SET version = 99', url.split('/').pop());
    const error = await PostgresBuildHistory.open(location(url)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StateUnavailableError);
    expect((error as Error).message).toMatch(/schema version 99, newer than this offload understands \(1\); upgrade offload/);
    expect((error as Error).message).not.toContain(server.password);
  });

  it('works with a role that has only the runtime grants on a schema its owner set up', async () => {
    const url = freshUrl();
    const db = url.split('/').pop()!;
    await (await PostgresBuildHistory.open(location(url))).close();
    server.superuser(`CREATE ROLE runner LOGIN PASSWORD 'runner-pw'`);
    server.superuser(
      `GRANT CONNECT ON DATABASE ${db} TO runner; GRANT USAGE ON SCHEMA offload TO runner;
       GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA offload TO runner;
       GRANT USAGE ON ALL SEQUENCES IN SCHEMA offload TO runner;`,
      db,
    );
    const runnerUrl = url.replace(`offload:${server.password}@`, 'runner:runner-pw@');
    const h = await PostgresBuildHistory.open(location(runnerUrl));
    const slots = await PostgresSlotLeases.open(location(runnerUrl));
    try {
      await h.record([{ name: 'a-1', system: 's', host: 'h', speedFactor: 1, seconds: 3, finishedAt: new Date(), status: 'built' }]);
      expect((await h.estimates()).map((e) => e.name)).toEqual(['a-1']);
      expect(await slots.exchange({ release: [], requests: [{ host: 'h', maxJobs: 1, priority: 1 }], waiting: new Map() })).toEqual([{ host: 'h', slot: 0 }]);
    } finally {
      await h.close();
      await slots.close();
    }
  });

  it('keeps leases and history across a server restart: nothing lost, no slot counted twice', async () => {
    const url = freshUrl();
    const holder = await PostgresSlotLeases.open(location(url));
    const other = await PostgresSlotLeases.open(location(url));
    const history = await PostgresBuildHistory.open(location(url));
    const events: string[] = [];
    const watcher = await PostgresSlotLeases.open(location(url), { onConnection: (event) => events.push(event) });
    try {
      const want = { release: [], requests: [{ host: 'h', maxJobs: 2, priority: 1 }, { host: 'h', maxJobs: 2, priority: 1 }], waiting: new Map() };
      const held = await holder.exchange(want);
      expect(held.every(Boolean)).toBe(true);
      await server.stop();
      await expect(other.exchange(want)).rejects.toBeInstanceOf(StateUnavailableError);
      // A build that finishes while the server is away is recorded once it is back.
      const recorded = history.record([{ name: 'during-outage-1', system: 's', host: 'h', speedFactor: 1, seconds: 2, finishedAt: new Date(), status: 'built' }]);
      await server.start();
      await recorded;
      expect((await history.estimates()).map((e) => e.name)).toEqual(['during-outage-1']);
      // Every runner reconnects on its own, each on its own back-off; the holder's running builds keep their slots.
      const deadline = Date.now() + 15_000;
      const onceBack = async (runner: typeof other, exchange: Parameters<typeof other.exchange>[0]): Promise<unknown> => {
        let answer: unknown;
        while (Date.now() < deadline) {
          answer = await runner.exchange(exchange).catch((e: unknown) => e);
          if (Array.isArray(answer)) break;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        return answer;
      };
      expect(await onceBack(other, want)).toEqual([undefined, undefined]);
      expect(await other.inUse('h')).toBe(2);
      // The watcher reconnects on its own back-off, which may end after the other runner's first answer.
      while (events.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(events).toEqual(['lost', 'back']);
      // The holder's releases after the restart free exactly its two slots.
      expect(await onceBack(holder, { release: held as never, requests: [], waiting: new Map() })).toEqual([]);
      expect((await other.exchange(want)).every(Boolean)).toBe(true);
    } finally {
      await holder.close();
      await other.close();
      await watcher.close();
      await history.close();
    }
  });

  it('offload exits 2 when the state is unreachable, naming the URL without its password', async () => {
    const port = await freePort();
    const r = await offload(['history', '--state', `postgres://offload:s3cret-pw@127.0.0.1:${port}/offload`]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`cannot reach the shared state at postgres://offload@127.0.0.1:${port}/offload`);
    expect(r.stderr).not.toContain('s3cret-pw');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('offload history reads what another runner recorded, and a wrong password is not echoed', async () => {
    const url = freshUrl();
    const h = await PostgresBuildHistory.open(location(url));
    await h.record([{ name: 'shared-1', system: 'x86_64-linux', host: 'ruby', speedFactor: 1, seconds: 12, finishedAt: new Date(), status: 'built' }]);
    await h.close();
    const r = await offload(['history', '--json'], { ...process.env, OFFLOAD_STATE: url });
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout) as { path: string; estimates: Array<{ name: string; seconds: number }> };
    expect(json.estimates).toEqual([expect.objectContaining({ name: 'shared-1', seconds: 12 })]);
    expect(json.path).not.toContain(server.password);
    expect(r.stdout).not.toContain(server.password);
    const wrong = await offload(['history', '--state', url.replace(server.password, 'not-the-password')]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/password authentication failed/);
    expect(wrong.stderr).not.toContain('not-the-password');
  });
});
