import { describe, expect, it } from 'vitest';
import { SlotGate, type SlotSource } from '../../src/run/slotGate.js';
import type { SlotLease } from '../../src/run/slotLeases.js';

/** Leases in memory, as another process would see them in the shared file. */
class Slots implements SlotSource {
  readonly used = new Map<string, number>();
  tryAcquire(key: string, maxJobs: number): SlotLease | undefined {
    const n = this.used.get(key) ?? 0;
    if (n >= maxJobs) return undefined;
    this.used.set(key, n + 1);
    let released = false;
    return {
      host: key,
      slot: n,
      release: () => {
        if (released) return;
        released = true;
        this.used.set(key, (this.used.get(key) ?? 1) - 1);
      },
    };
  }
  inUse(key: string): number {
    return this.used.get(key) ?? 0;
  }
}

const gate = (leases: Slots) =>
  new SlotGate({
    leases,
    keys: new Map([
      ['local', 'local'],
      ['ruby', '127.0.0.1:2201'],
    ]),
    maxJobs: new Map([
      ['local', 0],
      ['ruby', 2],
    ]),
  });

describe('build slots at dispatch', () => {
  it('leases a slot per job and reports the host full once another process holds the rest', () => {
    const leases = new Slots();
    const g = gate(leases);
    leases.tryAcquire('127.0.0.1:2201', 2); // another offload run
    const lease = g.take('ruby');
    expect(lease).toBeDefined();
    expect(g.take('ruby')).toBeUndefined();
    expect(g.isFull('ruby')).toBe(true);
    expect(g.freed()).toEqual([]);
    lease!.release();
    expect(g.freed()).toEqual(['ruby']);
    expect(g.isFull('ruby')).toBe(false);
    expect(g.anyFull()).toBe(false);
  });

  it('does not gate hosts without slots to lease or without a key', () => {
    const g = gate(new Slots());
    expect(g.take('local')).toBeNull();
    expect(g.take('kana')).toBeNull();
    expect(g.anyFull()).toBe(false);
  });
});
