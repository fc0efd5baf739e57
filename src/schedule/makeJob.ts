import { estimate, type DurationRules, type EstimationInput, type HistoryLookup } from './durations.js';
import type { Job } from './types.js';

/** A scheduler Job from a derivation's facts, its deps in the job set, and the duration model. */
export function makeJob(drv: EstimationInput, deps: string[], rules: DurationRules, history?: HistoryLookup): Job {
  const { seconds, source } = estimate(drv, rules, history);
  return {
    id: drv.drvPath,
    name: drv.name,
    system: drv.system,
    requiredFeatures: [...drv.requiredSystemFeatures],
    duration: seconds,
    estimateSource: source,
    deps,
    preferLocalBuild: drv.preferLocalBuild,
    isBuiltin: drv.isBuiltin,
  };
}
