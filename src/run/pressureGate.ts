import { pressureReasons, type BuilderPressure, type PressureLimits } from '../remote/builderPressure.js';

export interface PressureSample {
  pressure: BuilderPressure;
  /** Limits the builder is over; empty when it takes jobs. */
  reasons: string[];
}

export interface PressureGateOptions {
  /** The builders to watch (host ids). */
  hosts: readonly string[];
  /** Reads a builder's pressure over its open connection, within timeoutMs; a failure leaves its last state. */
  probe: (host: string, timeoutMs: number) => Promise<BuilderPressure>;
  /** A look at one builder ends after this, answered or not: a hung builder never holds up dispatch. */
  probeTimeoutMs: number;
  limits: ReadonlyMap<string, PressureLimits>;
  /** At most one look per builder this often while jobs wait. */
  intervalMs: number;
  /** After every look at a builder; `changed` when it went from loaded to not, or back. */
  onSample: (host: string, sample: PressureSample, changed: boolean) => void;
}

/** How often builders are looked at while jobs wait: "every few seconds", like Hydra's queue runner. */
export const PRESSURE_INTERVAL_MS = 3_000;

/**
 * How long one look at a builder may take. The command only reads /proc and
 * runs df; a builder that cannot answer that in a few seconds is hung (or its
 * df is stuck on a filesystem), and counts as not read: it keeps its last
 * state, and host health decides whether it is down.
 */
export const PRESSURE_PROBE_TIMEOUT_MS = 5_000;

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
          pressure = await within(this.options.probe(host, this.options.probeTimeoutMs), this.options.probeTimeoutMs);
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

/** The probe's answer, or a rejection once timeoutMs has passed (whatever the probe does about its own bound). */
async function within<T>(probe: Promise<T>, timeoutMs: number): Promise<T> {
  probe.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([probe, expired]);
  } finally {
    clearTimeout(timer);
  }
}
