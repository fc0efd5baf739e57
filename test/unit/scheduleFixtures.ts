import type { Host, Job } from '../../src/schedule/types.js';

/** A one-slot x86_64-linux host; `local` is the local machine. */
export function testHost(id: string, over: Partial<Host> = {}): Host {
  return { id, systems: ['x86_64-linux'], supportedFeatures: [], mandatoryFeatures: [], maxJobs: 1, speedFactor: 1, isLocal: id === 'local', ...over };
}

/** An x86_64-linux job named after its id, estimated by rules. */
export function testJob(id: string, duration: number, deps: string[] = [], over: Partial<Job> = {}): Job {
  return { id, name: id, system: 'x86_64-linux', requiredFeatures: [], duration, estimateSource: 'rules', deps, preferLocalBuild: false, isBuiltin: false, ...over };
}
