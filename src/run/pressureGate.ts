import { pressureReasons, type BuilderPressure, type PressureLimits } from '../remote/builderPressure.js';

export interface PressureSample {
  pressure: BuilderPressure;
  /** Limits the builder is over; empty when it takes jobs. */
  reasons: string[];
}

export interface PressureGateOptions {
  /** The builders to watch (host ids). */
  hosts: readonly string[];
  /** Reads a builder's pressure over its open connection; a failure leaves its last state. */
  probe: (host: string) => Promise<BuilderPressure>;
  limits: ReadonlyMap<string, PressureLimits>;
  /** At most one look per builder this often while jobs wait. */
  intervalMs: number;
  /** After every look at a builder; `changed` when it went from loaded to not, or back. */
  onSample: (host: string, sample: PressureSample, changed: boolean) => void;
}

/** How often builders are looked at while jobs wait: "every few seconds", like Hydra's queue runner. */
export const PRESSURE_INTERVAL_MS = 3_000;

/**
 * Builders' own pressure, as a gate at dispatch: a builder over a limit is
 * "loaded" and gets no new job until a later look finds it recovered. Looks
 * happen at the start of a run and then at most every intervalMs, only
 * while jobs wait for a slot (a run that has placed everything does not
 * poll).
 */
export class PressureGate {
  private readonly loaded = new Map<string, string[]>();
  private lastLook = -Infinity;
  private looking: Promise<void> | undefined;

  constructor(private readonly options: PressureGateOptions) {}

  isLoaded(host: string): boolean {
    return this.loaded.has(host);
  }

  anyLoaded(): boolean {
    return this.loaded.size > 0;
  }

  loadedHosts(): string[] {
    return [...this.loaded.keys()];
  }

  /** Looks at every builder now (in parallel) and resolves when all have answered or failed. */
  look(): Promise<void> {
    this.looking ??= this.lookAll().finally(() => (this.looking = undefined));
    return this.looking;
  }

  /** Jobs are waiting: look again if the interval has passed. Returns ms until the next look is due. */
  due(nowMs: number): number {
    const wait = this.lastLook + this.options.intervalMs - nowMs;
    if (wait <= 0 && !this.looking) {
      void this.look();
      return this.options.intervalMs;
    }
    return Math.max(wait, 0) || this.options.intervalMs;
  }

  private async lookAll(): Promise<void> {
    this.lastLook = performance.now();
    await Promise.all(
      this.options.hosts.map(async (host) => {
        let pressure: BuilderPressure;
        try {
          pressure = await this.options.probe(host);
        } catch {
          // An unreachable builder is the host-health module's business, not pressure's.
          return;
        }
        const limits = this.options.limits.get(host);
        const reasons = limits ? pressureReasons(pressure, limits) : [];
        const changed = this.loaded.has(host) !== reasons.length > 0;
        if (reasons.length > 0) this.loaded.set(host, reasons);
        else this.loaded.delete(host);
        this.options.onSample(host, { pressure, reasons }, changed);
      }),
    );
  }
}
