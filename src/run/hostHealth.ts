/**
 * How each builder has fared during this run, so a dead host is not retried
 * for every derivation (what Nix does, nix#13513). Like Hydra's queue
 * runner: consecutive failures are counted per host; once a host reaches
 * the threshold it leaves the rotation for a back-off that doubles each time
 * it is taken out again, then comes back and is reconnected on first use.
 * A job built on the host clears its record.
 *
 * - `lost`: a connection dropped, or the builder answered "transient
 *   failure"; the host may be fine, so it stays until the threshold.
 * - `unreachable`: a connect attempt failed, or keep-alives went unanswered
 *   (a hung host); retrying at once would only wait out the same timeout,
 *   so it counts as reaching the threshold.
 * - `refused`: wrong or unknown host key, or login refused; no back-off
 *   fixes that, so the host is out for the rest of the run.
 */
export type HostFailureKind = 'lost' | 'unreachable' | 'refused';

export interface HostHealthOptions {
  /** Consecutive failures that take a host out of rotation (default 2). */
  failureThreshold: number;
  /** Seconds out of rotation the first time; doubles each further time (default 30). */
  backoffSeconds: number;
  /** The back-off never exceeds this (default 600 s). */
  maxBackoffSeconds: number;
}

export const defaultHostHealthOptions: HostHealthOptions = { failureThreshold: 2, backoffSeconds: 30, maxBackoffSeconds: 600 };

export type HostVerdict =
  /** Still in rotation: reconnect on next use. */
  | { action: 'keep'; failures: number }
  /** Out until `until` (seconds since the run started). */
  | { action: 'backoff'; failures: number; seconds: number; until: number }
  | { action: 'retire' };

/** What the end-of-run summary says about one host that had trouble. */
export interface HostTrouble {
  host: string;
  /** Failures seen over the whole run. */
  failures: number;
  /** Times it was taken out of rotation. */
  timesOut: number;
  /** The last failure's message. */
  reason: string;
  /** Out for the rest of the run (refused), or still in back-off when the run ended. */
  outAtEnd: boolean;
  retired: boolean;
}

interface HostRecord {
  consecutive: number;
  /** Outages since the last success: the back-off's exponent. */
  streak: number;
  total: number;
  timesOut: number;
  reason: string;
  until: number;
  retired: boolean;
}

export class HostHealth {
  private readonly records = new Map<string, HostRecord>();

  constructor(private readonly options: HostHealthOptions = defaultHostHealthOptions) {}

  failure(host: string, kind: HostFailureKind, reason: string, now: number): HostVerdict {
    const r = this.record(host);
    r.total += 1;
    r.reason = reason;
    if (r.retired) return { action: 'retire' };
    if (kind === 'refused') {
      r.retired = true;
      r.timesOut += 1;
      r.until = Infinity;
      return { action: 'retire' };
    }
    r.consecutive = kind === 'unreachable' ? Math.max(r.consecutive + 1, this.options.failureThreshold) : r.consecutive + 1;
    if (r.consecutive < this.options.failureThreshold) return { action: 'keep', failures: r.consecutive };
    r.streak += 1;
    r.timesOut += 1;
    const seconds = backoff(this.options, r.streak);
    r.until = now + seconds;
    return { action: 'backoff', failures: r.consecutive, seconds, until: r.until };
  }

  /** A job was built there: the host is healthy again. */
  success(host: string): void {
    const r = this.records.get(host);
    if (!r || r.retired) return;
    r.consecutive = 0;
    r.streak = 0;
  }

  isOut(host: string, now: number): boolean {
    const r = this.records.get(host);
    return r !== undefined && (r.retired || now < r.until);
  }

  reasonOf(host: string): string | undefined {
    return this.records.get(host)?.reason;
  }

  troubles(now: number): HostTrouble[] {
    return [...this.records].map(([host, r]) => ({
      host,
      failures: r.total,
      timesOut: r.timesOut,
      reason: r.reason,
      outAtEnd: r.retired || now < r.until,
      retired: r.retired,
    }));
  }

  private record(host: string): HostRecord {
    let r = this.records.get(host);
    if (!r) this.records.set(host, (r = { consecutive: 0, streak: 0, total: 0, timesOut: 0, reason: '', until: -Infinity, retired: false }));
    return r;
  }
}

/** interval · 2^(n−1) for the n-th outage since the host last built something, capped. */
export function backoff(options: HostHealthOptions, outage: number): number {
  return Math.min(options.maxBackoffSeconds, options.backoffSeconds * 2 ** Math.max(0, outage - 1));
}
