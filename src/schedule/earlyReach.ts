import type { Derivation } from '../drv/derivation.js';
import { fits } from './fit.js';
import type { Host } from './types.js';

/** What deciding needs of a builder: its name and what it builds. */
export type BuilderFacts = Pick<Host, 'systems' | 'supportedFeatures' | 'mandatoryFeatures' | 'maxJobs'> & { hostName: string };

/**
 * Whether a run may log in to its builders before it knows which
 * derivations it must build (the local store not asked yet, no job made):
 * only when none of them could be bad input, that is when every
 * derivation of the closure but builtins (which run locally) fits one of
 * the builders. A closure holding one that fits none may be refused (no
 * machine fits it) or built locally; either way the builders are reached
 * only once the run knows, as without the early start, so bad input still
 * contacts no builder.
 */
export function mayReachBuildersEarly(drvs: Iterable<Pick<Derivation, 'drvPath' | 'system' | 'requiredSystemFeatures' | 'isBuiltin'>>, builders: readonly BuilderFacts[]): boolean {
  if (builders.length === 0) return false;
  const hosts = builders.map<Host>((b) => ({ id: b.hostName, systems: b.systems, supportedFeatures: b.supportedFeatures, mandatoryFeatures: b.mandatoryFeatures, maxJobs: b.maxJobs, speedFactor: 1, isLocal: false }));
  for (const drv of drvs) {
    if (drv.isBuiltin) continue;
    const job = { id: drv.drvPath, system: drv.system, requiredFeatures: drv.requiredSystemFeatures, isBuiltin: false };
    if (!hosts.some((host) => fits(host, job))) return false;
  }
  return true;
}
