import { StateUnavailableError } from '../state/stateUnavailable.js';
import type { SlotLease, SlotLeases, SlotRequest } from '../slots/slotLeases.js';

export interface SlotGateOptions {
  leases: SlotLeases;
  /** Host id → lease key (the same machine must get the same key in every runner, e.g. `address:port`). */
  keys: ReadonlyMap<string, string>;
  /** Host id → its maxJobs. */
  maxJobs: ReadonlyMap<string, number>;
  /** Offload's messages (state lost and back). */
  log: (line: string) => void;
  /**
   * `critical-path` (default): claims carry each job's remaining critical
   * path, so the fleet serves the most urgent job first. `arrival`: every
   * claim is equal and slots are served in arrival order, for a runner
   * whose work should never go ahead of others'.
   */
  priority?: 'critical-path' | 'arrival';
}

export interface GateStart {
  host: string;
  /** Remaining critical path of the job, seconds. */
  priority: number;
}

/**
 * Build slots shared with other runners, at dispatch time. Each step of the
 * executor's loop makes one exchange with the shared leases: the slots its
 * new jobs need, the leases of finished jobs (one may be kept for the next
 * job on the same host), and the hosts it waits for with the priority of its
 * best job there. A host another runner fills is "full": the scheduler stops
 * offering it (so its jobs may go elsewhere) until a slot may have freed
 * there (a wake-up from the store, or a look every recheckMs).
 * Hosts without a key or with maxJobs 0 are not gated.
 */
export class SlotGate {
  private readonly full = new Set<string>();
  /** Hosts refused since their last grant: this runner stands in line there. */
  private readonly waitingFor = new Set<string>();
  private spares: SlotLease[] = [];
  private away = false;

  private readonly arrival: boolean;

  constructor(private readonly options: SlotGateOptions) {
    this.arrival = options.priority === 'arrival';
  }

  get recheckMs(): number {
    return this.options.leases.recheckMs;
  }

  /**
   * Leases for jobs about to start, in order: a lease, `null` when the host
   * is not gated, undefined when it is full. `waitingPriority(host)` is the
   * priority of the best ready job that could run on a host, if any. Leases
   * given back on the hosts requested here are offered for reuse; those on
   * other hosts stay until `settle`, so a later pass of the same dispatch
   * round can still use them.
   */
  async take(starts: readonly GateStart[], waitingPriority: (host: string) => number | undefined): Promise<Array<SlotLease | null | undefined>> {
    const requests: SlotRequest[] = [];
    const requestOf: number[] = [];
    starts.forEach((start, i) => {
      const gated = this.gated(start.host);
      if (!gated) return;
      requestOf[i] = requests.length;
      requests.push({ host: gated.key, maxJobs: gated.maxJobs, priority: this.arrival ? 0 : start.priority });
    });
    if (requests.length === 0) return starts.map(() => null);
    const keys = new Set(requests.map((r) => r.host));
    // Taken out before the exchange: a job that ends while it is in flight gives back a lease
    // the exchange has not seen, which must stay a spare for the next one, never be dropped.
    const release = this.spares.filter((lease) => keys.has(lease.host));
    this.spares = this.spares.filter((lease) => !keys.has(lease.host));
    const granted = await this.exchange(release, requests, waitingPriority);
    return starts.map((start, i) => {
      const index = requestOf[i];
      if (index === undefined) return null;
      const lease = granted[index];
      if (lease) this.waitingFor.delete(start.host);
      else {
        this.full.add(start.host);
        this.waitingFor.add(start.host);
      }
      return lease;
    });
  }

  /** The end of a dispatch round: leases nobody reused are freed, and the waiting claims are brought up to date. */
  async settle(waitingPriority: (host: string) => number | undefined): Promise<void> {
    const release = this.spares;
    const waiting = this.waiting(waitingPriority);
    if (release.length === 0 && !this.waitingChanged(waiting)) return;
    this.spares = [];
    await this.exchange(release, [], waitingPriority, waiting);
  }

  private async exchange(
    release: SlotLease[],
    requests: SlotRequest[],
    waitingPriority: (host: string) => number | undefined,
    waiting = this.waiting(waitingPriority),
  ): Promise<Array<SlotLease | undefined>> {
    try {
      const granted = await this.options.leases.exchange({ release, requests, waiting });
      this.lastWaiting = waiting;
      this.away = false;
      return granted;
    } catch (error) {
      if (!(error instanceof StateUnavailableError)) throw error;
      if (!this.away) this.options.log(`offload: ${error.message}; new builds wait for it`);
      this.away = true;
      return requests.map(() => undefined);
    }
  }

  /** Calls back (with a lease key, when known) whenever a slot may have come free. */
  onFreed(listener: (key?: string) => void): () => void {
    return this.options.leases.onFreed(listener);
  }

  /** A finished job's lease: kept for the next exchange, which reuses or frees it. */
  giveBack(lease: SlotLease): void {
    this.spares.push(lease);
  }

  /** Leases or waiting claims changed since the last exchange: the executor should make one. */
  hasNews(): boolean {
    return this.spares.length > 0;
  }

  isFull(host: string): boolean {
    return this.full.has(host);
  }

  anyFull(): boolean {
    return this.full.size > 0;
  }

  /** Full hosts to offer again (all, or those behind one lease key); the next exchange decides. */
  reopen(key?: string): string[] {
    const hosts = [...this.full].filter((host) => key === undefined || this.options.keys.get(host) === key);
    for (const host of hosts) this.full.delete(host);
    return hosts;
  }

  private lastWaiting: ReadonlyMap<string, number> = new Map();

  private waiting(priorityOf: (host: string) => number | undefined): Map<string, number> {
    const waiting = new Map<string, number>();
    for (const host of [...this.waitingFor]) {
      const gated = this.gated(host)!;
      const priority = priorityOf(host);
      if (priority === undefined) {
        this.waitingFor.delete(host);
        continue;
      }
      waiting.set(gated.key, this.arrival ? 0 : Math.max(priority, waiting.get(gated.key) ?? -Infinity));
    }
    return waiting;
  }

  private waitingChanged(waiting: ReadonlyMap<string, number>): boolean {
    if (waiting.size !== this.lastWaiting.size) return true;
    for (const [key, priority] of waiting) if (this.lastWaiting.get(key) !== priority) return true;
    return false;
  }

  private gated(host: string): { key: string; maxJobs: number } | undefined {
    const key = this.options.keys.get(host);
    const maxJobs = this.options.maxJobs.get(host) ?? 0;
    return key === undefined || maxJobs < 1 ? undefined : { key, maxJobs };
  }
}
