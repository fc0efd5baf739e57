import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SlotGate } from '../../src/run/slotGate.js';
import { SqliteSlotLeases } from '../../src/slots/sqliteSlotLeases.js';

let dir: string;
const open: SqliteSlotLeases[] = [];
const leases = () => {
  const l = new SqliteSlotLeases({ file: join(dir, 'slots.sqlite') });
  open.push(l);
  return l;
};
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'offload-gate-'));
});
afterEach(async () => {
  for (const l of open.splice(0)) await l.close();
  rmSync(dir, { recursive: true, force: true });
});

const RUBY = '127.0.0.1:2201';
const gate = (l: SqliteSlotLeases) =>
  new SlotGate({
    leases: l,
    keys: new Map([
      ['local', 'local:test'],
      ['ruby', RUBY],
    ]),
    maxJobs: new Map([
      ['local', 0],
      ['ruby', 2],
    ]),
    log: () => undefined,
  });

describe('build slots at dispatch', () => {
  it('leases a slot per job and reports the host full once another runner holds the rest', async () => {
    const other = leases();
    await other.exchange({ release: [], requests: [{ host: RUBY, maxJobs: 2, priority: 1 }], waiting: new Map() });
    const g = gate(leases());
    const [lease, refused] = await g.take([{ host: 'ruby', priority: 5 }, { host: 'ruby', priority: 4 }], () => undefined);
    expect(lease).toMatchObject({ host: RUBY, slot: 1 });
    expect(refused).toBeUndefined();
    expect(g.isFull('ruby')).toBe(true);
    expect(g.reopen()).toEqual(['ruby']);
    expect(g.anyFull()).toBe(false);
  });

  it('gives a finished job\'s lease to the next job on that host in the next exchange', async () => {
    const l = leases();
    const g = gate(l);
    const [first] = await g.take([{ host: 'ruby', priority: 3 }], () => undefined);
    g.giveBack(first!);
    expect(g.hasNews()).toBe(true);
    const [again] = await g.take([{ host: 'ruby', priority: 2 }], () => undefined);
    expect(again).toEqual(first);
    expect(await l.inUse(RUBY)).toBe(1);
    g.giveBack(again!);
    await g.settle(() => undefined);
    expect(await l.inUse(RUBY)).toBe(0);
  });

  it('stands in line for a full host with its best ready job, so a less urgent runner leaves the freed slot to it', async () => {
    const holder = leases();
    const [a, b] = await holder.exchange({ release: [], requests: [0, 1].map(() => ({ host: RUBY, maxJobs: 2, priority: 1 })), waiting: new Map() });
    const g = gate(leases());
    expect(await g.take([{ host: 'ruby', priority: 9 }], () => 9)).toEqual([undefined]);
    // The holder's next job is less urgent: it must give the slot up rather than keep it.
    const [kept] = await holder.exchange({ release: [a!], requests: [{ host: RUBY, maxJobs: 2, priority: 1 }], waiting: new Map() });
    expect(kept).toBeUndefined();
    g.reopen();
    expect(await g.take([{ host: 'ruby', priority: 9 }], () => 9)).toEqual([{ host: RUBY, slot: a!.slot }]);
    expect(b).toBeDefined();
  });

  it('keeps a lease given back while an exchange is in flight, and frees it in the next one', async () => {
    const l = leases();
    const g = gate(l);
    const [first, second] = await g.take([{ host: 'ruby', priority: 3 }, { host: 'ruby', priority: 3 }], () => undefined);
    g.giveBack(first!);
    // The second job ends while the exchange that reuses the first lease has not answered yet.
    const taking = g.take([{ host: 'ruby', priority: 2 }], () => undefined);
    g.giveBack(second!);
    const [reused] = await taking;
    expect(reused).toEqual(first);
    expect(g.hasNews()).toBe(true);
    await g.settle(() => undefined);
    expect(await l.inUse(RUBY)).toBe(1);
    g.giveBack(reused!);
    await g.settle(() => undefined);
    expect(await l.inUse(RUBY)).toBe(0);
  });

  it('does not gate hosts without slots to lease or without a key', async () => {
    const g = gate(leases());
    expect(await g.take([{ host: 'local', priority: 1 }, { host: 'kana', priority: 1 }], () => undefined)).toEqual([null, null]);
    expect(g.anyFull()).toBe(false);
  });
});

describe('a dispatch round', () => {
  it('keeps a finished job\'s lease through the round, so a later pass may still reuse it', async () => {
    const l = leases();
    const other = leases();
    const g = gate(l);
    const [lease] = await g.take([{ host: 'ruby', priority: 3 }], () => undefined);
    g.giveBack(lease!);
    // A pass that asks for another host leaves the ruby lease alone: no other runner can take it meanwhile.
    expect(await g.take([{ host: 'kana', priority: 3 }], () => undefined)).toEqual([null]);
    expect(await l.inUse(RUBY)).toBe(1);
    const [again] = await g.take([{ host: 'ruby', priority: 3 }], () => undefined);
    expect(again).toEqual(lease);
    g.giveBack(again!);
    await g.settle(() => undefined);
    expect(await other.inUse(RUBY)).toBe(0);
  });
});
