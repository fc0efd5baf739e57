import type { Finding } from './builderClaims.js';
import type { StoreSpace } from './builderMetrics.js';
import { formatKiB } from '../format/size.js';

export type Verdict = 'ok' | 'warning' | 'unusable';

export interface StoreSpaceLimits {
  /** Below this nothing fits: copies and builds fail at once. */
  unusableBelowKiB: number;
  /** Below this a big closure or output may not fit. */
  warnBelowKiB: number;
}

export const DEFAULT_STORE_SPACE_LIMITS: StoreSpaceLimits = {
  unusableBelowKiB: 100 * 1024,
  warnBelowKiB: 2 * 1024 * 1024,
};

/** Busy builders still build, only slower; the scheduler does not read this, so it is information. */
export const BUSY_LOAD_PER_CPU = 1.5;

export function storeSpaceFindings(space: StoreSpace, limits: StoreSpaceLimits = DEFAULT_STORE_SPACE_LIMITS): Finding[] {
  const free = `${formatKiB(space.availableKiB)} free in the store (${space.mountPoint}, ${space.usedPercent}% used)`;
  if (space.availableKiB < limits.unusableBelowKiB) {
    return [{ severity: 'unusable', message: `only ${free}: inputs and outputs cannot be stored there` }];
  }
  if (space.availableKiB < limits.warnBelowKiB) {
    return [{ severity: 'warning', message: `only ${free}: large builds may run out of space` }];
  }
  return [];
}

export function loadFindings(loadPerCpu: number): Finding[] {
  if (loadPerCpu < BUSY_LOAD_PER_CPU) return [];
  return [{ severity: 'note', message: `busy: load ${loadPerCpu.toFixed(2)} per CPU, builds there will run slower than its speedFactor says` }];
}

/** The worst finding decides; its message (or the first of the worst) is the reason. */
export function verdictOf(findings: readonly Finding[]): { verdict: Verdict; reason?: string } {
  for (const severity of ['unusable', 'warning'] as const) {
    const worst = findings.filter((f) => f.severity === severity);
    if (worst.length > 0) {
      const more = worst.length > 1 ? ` (and ${worst.length - 1} more)` : '';
      return { verdict: severity, reason: `${worst[0]!.message}${more}` };
    }
  }
  return { verdict: 'ok' };
}
