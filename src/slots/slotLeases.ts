import { BadInputError } from '../errors/offloadError.js';

/**
 * One build slot on one builder, held by one offload process (a "runner")
 * until it gives it back. Hosts are keyed by where the builder really is
 * (`address:port`), so every runner names the same machine the same way.
 */
export interface SlotLease {
  readonly host: string;
  /** 0-based; distinct among the live leases of a host. */
  readonly slot: number;
}

export interface SlotRequest {
  host: string;
  /** The builder's slots as this runner's machines file gives them. */
  maxJobs: number;
  /** Seconds of remaining critical path of the job that would run in the slot. */
  priority: number;
}

/** What a runner does with the shared slots in one step of its dispatch loop. */
export interface SlotExchange {
  /** Leases given back. A request on the same host may reuse one, else it is freed. */
  release: readonly SlotLease[];
  /** Slots wanted now. */
  requests: readonly SlotRequest[];
  /**
   * The hosts this runner is waiting for (other runners hold their slots),
   * each with the priority of its best job that would run there. Replaces
   * what the previous exchange said.
   */
  waiting: ReadonlyMap<string, number>;
}

/**
 * Build slots shared by every offload process using the same state, so
 * that together they never run more than a builder's maxJobs builds on it:
 * SQLite in the user's cache (one machine: sqliteSlotLeases.ts) or
 * PostgreSQL (a fleet of machines: postgresSlotLeases.ts).
 *
 * Slots are try-locks, as in Nix's build-remote: a runner never blocks on a
 * slot, it places the job elsewhere or says it is waiting. When the fleet is
 * saturated, a freed slot goes to the waiting runner whose job has the
 * longest remaining critical path (slotGrants.ts), so the critical-path
 * order of one runner holds across all of them.
 *
 * A runner that dies without closing (SIGKILL) loses its leases within a few
 * seconds: SQLite checks the owner's pid, PostgreSQL the owner's session.
 */
export interface SlotLeases {
  /** Where the leases live, for messages: a file, or a URL without its password. */
  readonly location: string;
  /**
   * How often a waiting runner looks again on its own. Releases and changes
   * of waiting runners also wake it (onFreed) where the store can say so;
   * a dead runner's slots are only seen on a look.
   */
  readonly recheckMs: number;
  /** One answer per request, in order: a lease, or undefined when the host has no slot for it now. */
  exchange(step: SlotExchange): Promise<Array<SlotLease | undefined>>;
  /** Live leases on a host, held by any runner. */
  inUse(host: string): Promise<number>;
  /** Called (with the host, when known) whenever a slot may have come free. Returns the unsubscribe. */
  onFreed(listener: (host?: string) => void): () => void;
  /** Gives back every lease and waiting claim of this runner. */
  close(): Promise<void>;
}

export class SlotLeaseError extends BadInputError {}

export function checkRequest(request: SlotRequest): void {
  // A host with 0 slots never gets a lease; waiting for one would hang forever.
  if (!Number.isSafeInteger(request.maxJobs) || request.maxJobs < 1) {
    throw new RangeError(`a build slot on ${request.host} needs maxJobs of at least 1, got ${request.maxJobs}`);
  }
  if (!Number.isFinite(request.priority)) throw new RangeError(`a build slot on ${request.host} needs a finite priority, got ${request.priority}`);
}
