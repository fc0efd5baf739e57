import { OffloadError } from '../errors/offloadError.js';
import { LOCAL_HOST } from '../schedule/types.js';
import { hostFailureKind } from './failure.js';
import { defaultHostHealthOptions, HostHealth, type HostFailureKind, type HostHealthOptions, type HostTrouble } from './hostHealth.js';
import type { RunEventListener } from './runEvents.js';
import type { PressureGate } from './pressureGate.js';
import type { SlotGate } from './slotGate.js';
import type { ChannelSource } from './storeChannel.js';

export interface HostRotationInput {
  /** Told whenever a host may or may not take jobs. */
  setHostAvailable(host: string, available: boolean): void;
  channels: ChannelSource;
  options?: HostHealthOptions;
  /** Builders kept in reserve (not in the plan): brought in when a planned host goes down. */
  reserves?: readonly string[];
  /** Build slots other runners hold: a full host takes no job from this run. */
  slots?: Pick<SlotGate, 'isFull'>;
  /** Builders' own load: a loaded host takes no new job until it recovers. */
  pressure?: Pick<PressureGate, 'isLoaded'>;
  log: (line: string) => void;
  now: () => number;
  onEvent?: RunEventListener;
  /** A host left the rotation: what only it held is gone. */
  onTakenOut: (host: string) => void;
  /** Something changed that may let the run start a job (or end). */
  resumeRun: () => void;
  /** A reconnect failed with something other than an OffloadError: a bug. */
  onInternalError: (error: unknown) => void;
}

/**
 * Which builders take jobs right now. A failing host is counted
 * (hostHealth.ts); at the threshold it leaves the rotation, the reserves are
 * brought in, and when its back-off ends it is reconnected before it takes
 * jobs again, so a host that is still dead costs one connect attempt rather
 * than a failed job. The scheduler sees a host as available when it is in
 * rotation, not held in reserve, has a slot free of other runners and is not
 * loaded by others.
 */
export class HostRotation {
  private readonly health: HostHealth;
  private readonly backoffTimers = new Map<string, NodeJS.Timeout>();
  /** Reconnects to hosts whose back-off ended; the run waits for them like for jobs. */
  private readonly reconnects = new Map<string, Promise<void>>();
  /** Reserves not brought in yet. */
  private readonly heldBack: Set<string>;
  /** Taken out after failures, until a reconnect after the back-off succeeds. */
  private readonly outOfRotation = new Set<string>();
  private stopped = false;

  constructor(private readonly input: HostRotationInput) {
    this.health = new HostHealth(input.options ?? defaultHostHealthOptions);
    this.heldBack = new Set(input.reserves ?? []);
  }

  /** A host's connection failed (the pool's 'down' event, or a connect attempt). */
  hostDown(host: string, error: unknown): void {
    const reason = error instanceof Error ? error.message : String(error);
    this.hostFailed(host, hostFailureKind(error), reason);
  }

  /** Counts a failure against `host`, which may leave the rotation. */
  hostFailed(host: string, kind: HostFailureKind, reason: string): void {
    if (host === LOCAL_HOST || this.stopped) return;
    if (this.health.isOut(host, this.input.now())) return;
    const verdict = this.health.failure(host, kind, reason, this.input.now());
    if (verdict.action === 'keep') {
      const threshold = this.input.options?.failureThreshold ?? defaultHostHealthOptions.failureThreshold;
      this.input.log(
        `offload: ${host} failed (${reason}); trying it again on next use (${verdict.failures} of ${threshold} failures in a row before it is taken out)`,
      );
      this.input.channels.dropHost?.(host);
      return;
    }
    const retry = verdict.action === 'backoff' ? `retrying it in ${formatSeconds(verdict.seconds)}` : 'not retried in this run';
    this.input.log(`offload: ${host} is down (${reason}); its jobs go to other machines; ${retry}`);
    this.input.onEvent?.({ type: 'hostDown', time: this.input.now(), host, reason });
    this.takeOut(host);
    if (verdict.action === 'backoff') {
      clearTimeout(this.backoffTimers.get(host));
      const timer = setTimeout(() => this.backIn(host), verdict.seconds * 1000);
      timer.unref();
      this.backoffTimers.set(host, timer);
    }
  }

  /** A job was built on `host`: its failures are forgotten. */
  succeeded(host: string): void {
    this.health.success(host);
  }

  /** Tells the scheduler whether `host` may take jobs now. */
  refresh(host: string): void {
    const available =
      !this.outOfRotation.has(host) && !this.heldBack.has(host) && this.input.slots?.isFull(host) !== true && this.input.pressure?.isLoaded(host) !== true;
    this.input.setHostAvailable(host, available);
  }

  /** Reconnects in flight: the run is not over while one may bring a host back. */
  pendingReconnects(): Promise<void>[] {
    return [...this.reconnects.values()];
  }

  /** The run is ending: no host comes back, nothing more is counted. */
  stop(): void {
    this.stopped = true;
    for (const timer of this.backoffTimers.values()) clearTimeout(timer);
    this.backoffTimers.clear();
  }

  troubles(now: number): HostTrouble[] {
    return this.health.troubles(now);
  }

  private takeOut(host: string): void {
    this.outOfRotation.add(host);
    this.refresh(host);
    this.input.channels.dropHost?.(host);
    for (const reserve of [...this.heldBack]) {
      this.heldBack.delete(reserve);
      this.refresh(reserve);
    }
    this.input.onTakenOut(host);
    this.input.resumeRun();
  }

  /** The back-off is over: reconnect first, then the host takes jobs. */
  private backIn(host: string): void {
    this.backoffTimers.delete(host);
    if (this.stopped) return;
    const attempt: Promise<void> = this.reconnect(host)
      .catch((error: unknown) => this.input.onInternalError(error))
      .finally(() => {
        if (this.reconnects.get(host) === attempt) this.reconnects.delete(host);
        this.input.resumeRun();
      });
    this.reconnects.set(host, attempt);
    this.input.resumeRun();
  }

  private async reconnect(host: string): Promise<void> {
    const { channels } = this.input;
    try {
      channels.release(host, await channels.acquire(host));
    } catch (error) {
      if (this.stopped) return;
      if (!(error instanceof OffloadError)) throw error;
      this.hostFailed(host, hostFailureKind(error), error.message);
      return;
    }
    if (this.stopped) return;
    this.input.log(`offload: ${host} is back in rotation`);
    this.input.onEvent?.({ type: 'hostBack', time: this.input.now(), host });
    this.outOfRotation.delete(host);
    this.refresh(host);
  }
}

function formatSeconds(seconds: number): string {
  return `${Number(seconds.toFixed(1))} s`;
}
