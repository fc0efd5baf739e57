/**
 * Where one job goes, given every usable host's slots as the scheduler
 * expects them to free: earliest finish, or for a job with slack the
 * slowest host that keeps it on time. Pure functions over the slot views
 * that `OnlineScheduler.next` builds for one round and books into.
 */

/** Seconds: an overdue job is assumed to end this soon, and comparisons tolerate it. */
export const EPS = 1e-6;

/** A host slot in one round's view: when it frees, and a gap a reserved slot leaves open before. */
export interface SlotView {
  t: number;
  /** Held for a job that becomes ready at gapEnd; jobs that finish by then may use it now. */
  gapEnd: number;
}

/** Where a job could go: a host's slot, its earliest finish there, and how it would use the slot. */
export interface SlotChoice {
  host: number;
  slot: number;
  eft: number;
  /** The slot is free now (else the job would wait for it). */
  now: boolean;
  /** It fits in the gap before a slot held for an upcoming critical job. */
  viaGap: boolean;
}

/** The hosts as placement compares them, fixed for a scheduler's life. */
export interface PlacementHosts {
  readonly speed: Float64Array;
  readonly isLocal: readonly boolean[];
  /** SchedulerOptions.slackPlacement. */
  readonly slackPlacement: boolean;
}

/** The job being placed: its duration at speed 1, and the latest finish that keeps the projected end. */
export interface JobToPlace {
  duration: number;
  preferLocalBuild?: boolean;
  deadline: number;
}

/** One host's slots, earliest first: free ones at `now`, busy ones when their job is expected to end. */
export function slotView(busyUntil: readonly number[], limit: number, now: number): SlotView[] {
  const view: SlotView[] = busyUntil.map((t) => ({ t, gapEnd: -1 }));
  view.sort(bySlotTime);
  if (view.length > limit) view.length = limit;
  while (view.length < limit) view.unshift({ t: now, gapEnd: -1 });
  return view;
}

/**
 * Where the job should go among `candidates` (host indices), if it is ready
 * at `at`. preferLocalBuild jobs take a free local slot (Nix semantics, not
 * mandatory). A job with slack takes the slowest host that still ends by its
 * deadline, starting now if possible; otherwise the earliest finish, even if
 * that means waiting.
 */
export function choose(
  job: JobToPlace,
  candidates: readonly number[],
  views: ReadonlyArray<SlotView[] | null>,
  at: number,
  now: number,
  hosts: PlacementHosts,
): SlotChoice | null {
  const { speed } = hosts;
  let slackPick: SlotChoice | null = null;
  let eftPick: SlotChoice | null = null;
  for (const k of candidates) {
    const view = views[k];
    if (!view) continue;
    const o = choiceOn(job.duration / speed[k]!, k, view, at, now);
    if (job.preferLocalBuild && o.now && hosts.isLocal[k]) return o;
    const sp = speed[k]!;
    if (hosts.slackPlacement && o.eft <= job.deadline) {
      const p = slackPick;
      if (!p || (o.now && !p.now) || (o.now === p.now && (sp < speed[p.host]! || (sp === speed[p.host] && o.eft < p.eft)))) {
        slackPick = o;
      }
    }
    const e = eftPick;
    if (!e || o.eft < e.eft - EPS || (o.eft <= e.eft + EPS && ((o.now && !e.now) || (o.now === e.now && sp > speed[e.host]!)))) {
      eftPick = o;
    }
  }
  return slackPick ?? eftPick;
}

/** Best way to run a job that takes `run` seconds on host k, given its slot view, if it is ready at `at`. */
function choiceOn(run: number, k: number, view: SlotView[], at: number, now: number): SlotChoice {
  const first = view[0]!;
  const startsNow = at <= now && first.t <= now;
  if (!startsNow && at <= now) {
    // A slot held for a soon-ready job can be used if this one ends first.
    for (let s = 0; s < view.length; s++) {
      const v = view[s]!;
      if (v.gapEnd > now && now + run <= v.gapEnd + EPS) return { host: k, slot: s, eft: now + run, now: true, viaGap: true };
    }
  }
  return { host: k, slot: 0, eft: Math.max(at, first.t) + run, now: startsNow, viaGap: false };
}

/** Books the chosen slot in the view; a slot held for a job not yet ready keeps its gap open. */
export function book(o: SlotChoice, view: SlotView[], at: number, now: number): void {
  const slot = view[o.slot]!;
  if (o.viaGap) {
    slot.gapEnd = -1;
    return;
  }
  slot.gapEnd = at > now && slot.t <= now ? at : -1;
  slot.t = o.eft;
  view.sort(bySlotTime);
}

/** A host can take a job now: a slot is free, or a held slot leaves a gap. */
export function isOpen(view: SlotView[] | null | undefined, now: number): boolean {
  if (!view) return false;
  if (view[0]!.t <= now) return true;
  for (const s of view) if (s.gapEnd > now) return true;
  return false;
}

function bySlotTime(a: SlotView, b: SlotView): number {
  return a.t - b.t;
}
