import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import type { SlotLease, SlotLeases, SlotRequest } from '../../src/slots/slotLeases.js';
import type { WorkerConfig } from './leaseWorker.js';

/**
 * What every slot lease store must do: run by test/unit/slotLeases.test.ts
 * against SQLite and by test/integration/statePostgres.test.ts against a
 * real PostgreSQL. `runner()` opens one more runner on the same (fresh per
 * test) store; `store()` names it for a worker process.
 */
export interface SlotStore {
  runner(): Promise<SlotLeases>;
  store(): string;
  /**
   * Resolves once the store no longer keeps a dead runner's leases for a
   * reason of its own, such as PostgreSQL's grace after a server start.
   */
  pastStartGrace?(): Promise<void>;
}

const root = join(import.meta.dirname, '..', '..');

export function describeSlotLeasesContract(label: string, make: () => SlotStore): void {
  describe(`slot lease contract (${label})`, () => {
    const open: SlotLeases[] = [];
    const children: ChildProcess[] = [];
    let s: SlotStore;
    const runner = async () => {
      s ??= make();
      const r = await s.runner();
      open.push(r);
      return r;
    };
    const want = (host: string, priority = 1, maxJobs = 2): SlotRequest => ({ host, maxJobs, priority });
    const exchange = (r: SlotLeases, requests: SlotRequest[], release: SlotLease[] = [], waiting = new Map<string, number>()) =>
      r.exchange({ release, requests, waiting });

    afterEach(async () => {
      for (const r of open.splice(0)) await r.close();
      for (const c of children.splice(0)) c.kill('SIGKILL');
      s = undefined as unknown as SlotStore;
    });

    it('grants distinct slots up to maxJobs, then refuses; inUse counts every runner', async () => {
      const a = await runner();
      const b = await runner();
      const mine = await exchange(a, [want('h', 1, 3), want('h', 1, 3)]);
      expect(mine.map((l) => l?.slot).sort()).toEqual([0, 1]);
      const theirs = await exchange(b, [want('h', 1, 3), want('h', 1, 3)]);
      expect(theirs.map((l) => l?.slot)).toEqual([2, undefined]);
      expect(await a.inUse('h')).toBe(3);
      expect(await a.inUse('other')).toBe(0);
    });

    it('a released slot goes back, or to the next job of the same runner on that host', async () => {
      const a = await runner();
      const [first, second] = await exchange(a, [want('h'), want('h')]);
      const [again] = await exchange(a, [want('h')], [second!]);
      expect(again).toEqual(second);
      await exchange(a, [], [first!, again!]);
      expect(await a.inUse('h')).toBe(0);
    });

    it('a freed slot goes to the waiting runner with the longest remaining critical path', async () => {
      const holder = await runner();
      const urgent = await runner();
      const relaxed = await runner();
      const held = await exchange(holder, [want('h'), want('h')]);
      expect(await exchange(relaxed, [want('h', 5)])).toEqual([undefined]);
      expect(await exchange(urgent, [want('h', 50)])).toEqual([undefined]);
      // The holder's own next job (priority 1) does not keep the slot: both waiters outrank it.
      expect(await exchange(holder, [want('h', 1)], [held[0]!])).toEqual([undefined]);
      expect(await exchange(relaxed, [want('h', 5)])).toEqual([undefined]);
      expect(await exchange(urgent, [want('h', 50)])).toEqual([{ host: 'h', slot: held[0]!.slot }]);
      // With the urgent runner served, the relaxed one is next.
      await exchange(holder, [], [held[1]!]);
      expect((await exchange(relaxed, [want('h', 5)]))[0]).toBeDefined();
    });

    it('equal priorities are served in the order they started waiting', async () => {
      const holder = await runner();
      const first = await runner();
      const second = await runner();
      const [lease] = await exchange(holder, [want('h', 1, 1)]);
      expect(await exchange(first, [want('h', 5, 1)])).toEqual([undefined]);
      expect(await exchange(second, [want('h', 5, 1)])).toEqual([undefined]);
      await exchange(holder, [], [lease!]);
      expect(await exchange(second, [want('h', 5, 1)])).toEqual([undefined]);
      expect((await exchange(first, [want('h', 5, 1)]))[0]).toBeDefined();
    });

    it('a runner that stops waiting no longer holds anyone back', async () => {
      const waiter = await runner();
      const other = await runner();
      expect(await exchange(waiter, [], [], new Map([['h', 100]]))).toEqual([]);
      expect(await exchange(other, [want('h', 1, 1)])).toEqual([undefined]);
      await exchange(waiter, [], [], new Map());
      expect((await exchange(other, [want('h', 1, 1)]))[0]).toBeDefined();
    });

    it('close gives back every lease and claim', async () => {
      const a = await runner();
      const b = await runner();
      await exchange(a, [want('h', 1, 1)], [], new Map([['g', 9]]));
      await a.close();
      expect(await b.inUse('h')).toBe(0);
      expect((await exchange(b, [want('h', 1, 1), want('g', 1, 1)])).every(Boolean)).toBe(true);
    });

    it('rejects a request for a host without slots', async () => {
      const a = await runner();
      await expect(exchange(a, [want('h', 1, 0)])).rejects.toThrow(RangeError);
    });

    it('frees the slots of a SIGKILLed runner within a few seconds', async () => {
      const observer = await runner();
      const config: WorkerConfig = { store: s.store(), host: 'k', maxJobs: 3, leases: 3 };
      const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/support/leaseWorker.ts'), JSON.stringify(config)], {
        cwd: root,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(child);
      const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
      expect(line).toBe('held 3');
      expect(await exchange(observer, [want('k', 1, 3)])).toEqual([undefined]);
      // A server started moments ago keeps every lease for its restart grace, by design (tested
      // elsewhere); this test is about a dead runner, so it starts the clock after that grace.
      await s.pastStartGrace?.();
      const killedAt = Date.now();
      child.kill('SIGKILL');
      await once(child, 'exit');
      let lease: SlotLease | undefined;
      while (!lease && Date.now() - killedAt < 15_000) {
        [lease] = await exchange(observer, [want('k', 1, 3)]);
        if (!lease) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(lease).toBeDefined();
      // Session lock or pid check plus a grace of a few seconds: well under what TCP keepalives
      // (25 s) or any lease timeout would take, so this fails if death went unnoticed.
      expect(Date.now() - killedAt).toBeLessThan(10_000);
      // The bound above is what counts; starting the worker (tsx compiling it) can take long on a loaded machine.
    }, 120_000);
  });
}
