import type { Command } from 'commander';
import { historyLookup, type EstimateKey, type EstimateLookup } from '../history/buildHistory.js';
import type { StateLocation } from '../state/stateLocation.js';
import type { PlanReportInput } from '../report/planReport.js';
import { planToSvg } from '../report/timelineSvg.js';
import { writeFileAtomic } from './atomicWrite.js';
import { addHistoryOptions, type HistoryOptions } from './runHistory.js';
import { openHistory } from './sharedState.js';

/** `offload plan`'s extras: the history it estimates from, and the timeline picture. */
export interface PlanOutputOptions extends HistoryOptions {
  svg?: string;
}

export function addPlanOutputOptions(cmd: Command): Command {
  cmd.option('--svg <file>', 'also draw the plan as a timeline (one lane per host) into this SVG file');
  return addHistoryOptions(cmd, 'estimates from rules only');
}

export interface PlanHistory {
  /** Estimates for jobsFromGraph, or undefined without history. */
  lookup?: EstimateLookup;
  /** Learned effective speed per host. */
  learnedSpeeds: Map<string, number>;
  /** Learned bytes per second from a cache or builder, when the history has seen enough. */
  transferRate?: (source: string) => number | undefined;
}

/** Reads the estimates the jobs need from the build history, if there is one; never creates a local one (a plan is a dry run). */
export async function planHistory(location: StateLocation, opts: HistoryOptions, keys: readonly EstimateKey[], warn: (message: string) => void): Promise<PlanHistory> {
  const history = await openHistory(location, opts, 'read', warn);
  if (!history) return { learnedSpeeds: new Map() };
  try {
    const learnedSpeeds = new Map([...(await history.hostSpeeds())].map(([host, s]) => [host, s.learnedSpeed]));
    const rates = await history.transferRates();
    return { lookup: await historyLookup(history, keys), learnedSpeeds, transferRate: (source) => rates.get(source) };
  } finally {
    await history.close();
  }
}

/** Lanes for every host that has slots or got a job; written whole or not at all. */
export async function writePlanSvg(path: string, input: PlanReportInput): Promise<void> {
  const used = new Set(input.plan.assignments.map((a) => a.host));
  const svg = planToSvg({
    assignments: input.plan.assignments,
    hosts: input.hosts.filter((h) => h.maxJobs > 0 || used.has(h.id)),
    names: new Map([...input.jobs.values()].map((j) => [j.id, j.name])),
    criticalPath: input.plan.criticalPath,
    makespan: input.plan.makespan,
  });
  await writeFileAtomic(path, svg, 'the plan picture');
}
