import type { SlotRequest } from './slotLeases.js';

/** A host's shared slots as one exchange sees them. */
export interface HostSlotState {
  /** Slot numbers held by live leases, the exchanging runner's own included, its releases not. */
  used: Set<number>;
  /** Other live runners waiting for this host: their priority, and since when (ms) they wait. */
  waiting: Array<{ priority: number; since: number }>;
  /** Since when the exchanging runner itself waits for this host, if it does. */
  mySince?: number;
}

export interface Grant {
  slot: number;
  /** The slot was one of the runner's releases, kept for this request. */
  reused: boolean;
}

/**
 * Which requests of one runner get a slot, decided inside the store's
 * transaction. Requests are served highest priority first; a request gets a
 * slot only while the host has more free slots than other runners waiting
 * there with a higher priority, or an equal one and a longer wait. So a
 * slot freed on a saturated fleet goes to the job with the longest remaining
 * critical path, whoever's it is. A released slot is reused for a request on
 * its host when that request may have it, else it is freed.
 *
 * Mutates `hosts` (granted slots become used). Returns one entry per request.
 */
export function grantSlots(
  requests: readonly SlotRequest[],
  hosts: ReadonlyMap<string, HostSlotState>,
  released: ReadonlyMap<string, readonly number[]>,
): Array<Grant | undefined> {
  const order = requests.map((_, i) => i).sort((a, b) => requests[b]!.priority - requests[a]!.priority || a - b);
  const reusable = new Map([...released].map(([host, slots]) => [host, [...slots]]));
  const grants: Array<Grant | undefined> = requests.map(() => undefined);
  for (const i of order) {
    const request = requests[i]!;
    const state = hosts.get(request.host);
    if (!state) continue;
    const free = request.maxJobs - state.used.size;
    const mySince = state.mySince ?? Infinity;
    const ahead = state.waiting.filter((w) => w.priority > request.priority || (w.priority === request.priority && w.since < mySince)).length;
    if (free <= ahead) continue;
    const mine = reusable.get(request.host) ?? [];
    const kept = mine.findIndex((slot) => !state.used.has(slot) && slot < request.maxJobs);
    const slot = kept >= 0 ? mine.splice(kept, 1)[0]! : lowestFree(state.used);
    state.used.add(slot);
    grants[i] = { slot, reused: kept >= 0 };
  }
  return grants;
}

export function lowestFree(used: ReadonlySet<number>): number {
  let slot = 0;
  while (used.has(slot)) slot++;
  return slot;
}

/**
 * The waiting claims an exchange leaves: the runner's own list, plus every
 * host where a request was refused (at that request's priority), minus hosts
 * where it got all it asked for.
 */
export function waitingAfter(
  waiting: ReadonlyMap<string, number>,
  requests: readonly SlotRequest[],
  grants: ReadonlyArray<Grant | undefined>,
): Map<string, number> {
  const out = new Map(waiting);
  const refused = new Set<string>();
  requests.forEach((request, i) => {
    if (grants[i]) return;
    refused.add(request.host);
    out.set(request.host, Math.max(request.priority, out.get(request.host) ?? -Infinity));
  });
  requests.forEach((request, i) => {
    if (grants[i] && !refused.has(request.host)) out.delete(request.host);
  });
  return out;
}
