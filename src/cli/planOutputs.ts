import type { Command } from 'commander';
import { historyLookup, type EstimateLookup } from '../history/buildHistory.js';
import type { PlanReportInput } from '../report/planReport.js';
import { planToSvg } from '../report/timelineSvg.js';
import { writeFileAtomic } from './atomicWrite.js';
import { addHistoryOptions, readHistory, type HistoryOptions } from './runHistory.js';

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
  close(): void;
}

/** Reads the build history, if there is one; never creates it (a plan is a dry run). */
export function planHistory(opts: HistoryOptions, warn: (message: string) => void): PlanHistory {
  const history = readHistory(opts, warn);
  if (!history) return { learnedSpeeds: new Map(), close: () => undefined };
  const learnedSpeeds = new Map([...history.hostSpeeds()].map(([host, s]) => [host, s.learnedSpeed]));
  return { lookup: historyLookup(history), learnedSpeeds, transferRate: (source) => history.transferRate(source), close: () => history.close() };
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
