import type { SlotLease } from './slotLeases.js';

/** The part of SlotLeases the executor uses: it never waits for a slot, it places the job elsewhere. */
export interface SlotSource {
  tryAcquire(key: string, maxJobs: number): SlotLease | undefined;
  inUse(key: string): number;
}

export interface SlotGateOptions {
  leases: SlotSource;
  /** Host id → lease key (the same machine must get the same key in every process, e.g. `address:port`). */
  keys: ReadonlyMap<string, string>;
  /** Host id → its maxJobs. */
  maxJobs: ReadonlyMap<string, number>;
}

/**
 * Build slots shared with other offload processes, at dispatch time: a job
 * the scheduler sends to a host takes one of the host's slots or does not
 * start there. A host whose slots other processes hold is "full": the
 * scheduler stops offering it (so its jobs can go elsewhere) until a poll
 * sees a free slot. Hosts without a key or with maxJobs 0 are not gated.
 */
export class SlotGate {
  private readonly full = new Set<string>();

  constructor(private readonly options: SlotGateOptions) {}

  /** A lease for a job about to start on `host`; `null` when the host is not gated; undefined when it is full. */
  take(host: string): SlotLease | null | undefined {
    const gated = this.gated(host);
    if (!gated) return null;
    const lease = this.options.leases.tryAcquire(gated.key, gated.maxJobs);
    if (!lease) this.full.add(host);
    return lease;
  }

  isFull(host: string): boolean {
    return this.full.has(host);
  }

  anyFull(): boolean {
    return this.full.size > 0;
  }

  /** Full hosts that have a free slot again (another process released one); they are no longer full. */
  freed(): string[] {
    const freed: string[] = [];
    for (const host of this.full) {
      const gated = this.gated(host)!;
      if (this.options.leases.inUse(gated.key) < gated.maxJobs) freed.push(host);
    }
    for (const host of freed) this.full.delete(host);
    return freed;
  }

  private gated(host: string): { key: string; maxJobs: number } | undefined {
    const key = this.options.keys.get(host);
    const maxJobs = this.options.maxJobs.get(host) ?? 0;
    return key === undefined || maxJobs < 1 ? undefined : { key, maxJobs };
  }
}
