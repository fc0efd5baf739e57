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
  const hosts = builders.map((b) => builderHost(b, 1));
  for (const drv of drvs) {
    if (drv.isBuiltin) continue;
    const job = { id: drv.drvPath, system: drv.system, requiredFeatures: drv.requiredSystemFeatures, isBuiltin: false };
    if (!hosts.some((host) => fits(host, job))) return false;
  }
  return true;
}

/**
 * The builders the first jobs will most likely go to, guessed from the
 * closure alone as soon as it is read (as if none of it were built yet):
 * their first `nix-store --serve` starts with the login rather than once
 * the local store has answered. Its leaves go, one per slot, to the
 * fastest builders that fit them, in the machines file's order among
 * equals, as the plan's earliest-finish placement does with jobs alike.
 * The run's own first-wave plan (firstWaveHosts.ts) adds any it missed.
 */
export function likelyFirstBuilders(drvs: Iterable<Pick<Derivation, 'drvPath' | 'system' | 'requiredSystemFeatures' | 'isBuiltin' | 'inputDrvs'>>, builders: readonly (BuilderFacts & { speedFactor: number })[]): string[] {
  const built = [...drvs].filter((d) => !d.isBuiltin);
  const inClosure = new Set(built.map((d) => d.drvPath));
  let leaves = built
    .filter((d) => !Object.keys(d.inputDrvs).some((p) => inClosure.has(p)))
    .map((d) => ({ id: d.drvPath, system: d.system, requiredFeatures: d.requiredSystemFeatures, isBuiltin: false }));
  const ranked = builders.filter((b) => b.maxJobs > 0).sort((a, b) => b.speedFactor - a.speedFactor);
  const chosen: string[] = [];
  for (const b of ranked) {
    if (leaves.length === 0) break;
    const host = builderHost(b, b.speedFactor);
    const taken = new Set(leaves.filter((job) => fits(host, job)).slice(0, b.maxJobs));
    if (taken.size === 0) continue;
    chosen.push(b.hostName);
    leaves = leaves.filter((job) => !taken.has(job));
  }
  return chosen;
}

/** A builder as the fit checks see it. */
function builderHost(b: BuilderFacts, speedFactor: number): Host {
  return { id: b.hostName, systems: b.systems, supportedFeatures: b.supportedFeatures, mandatoryFeatures: b.mandatoryFeatures, maxJobs: b.maxJobs, speedFactor, isLocal: false };
}
