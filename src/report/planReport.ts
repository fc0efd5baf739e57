import type { HeldUnit } from '../graph/queryMissing.js';
import { placementReason } from '../schedule/placementReason.js';
import type { Host, Job, Plan } from '../schedule/types.js';
import { formatBytes } from './byteSize.js';
import { formatDuration } from './duration.js';
import { renderTable, wrapLongLines } from './table.js';

export interface PlanReportInput {
  plan: Plan;
  jobs: ReadonlyMap<string, Job>;
  hosts: readonly Host[];
  /** Derivations skipped because all their outputs are already valid locally. */
  alreadyBuilt: readonly string[];
  machinesSource: string;
  /** Effective speed per host learned from the build history (same units as speedFactor). */
  learnedSpeeds?: ReadonlyMap<string, number>;
  /** Outputs builders hold that stay there (the roots among them are copy jobs). */
  held?: readonly HeldUnit[];
  /** The caches asked, when substitution is on. */
  substituters?: readonly string[];
}

/** Why a job is where it is: the placement reason for a build, what moves from where for a fetch or copy. */
function jobReason(job: Job, host: string, input: PlanReportInput, critical: boolean): string {
  if (job.action === 'fetch') return `fetch ${formatBytes(job.transfer!.bytes)} from ${job.transfer!.from}${job.transfer!.onBuilder ? ' on the builder that needs it' : ''}`;
  if (job.action === 'copy') return `on builder ${job.transfer!.from}: copy ${formatBytes(job.transfer!.bytes)} here`;
  return placementReason(job, host, input.hosts, input.plan, critical);
}

export interface HostUsage {
  host: string;
  slots: number;
  speedFactor: number;
  /** What the history says the host's speed really is, when it has compared the host with others. */
  learnedSpeed?: number;
  jobs: number;
  busySeconds: number;
  /** Busy slot-seconds / (slots × makespan). */
  utilisation: number;
}

export function hostUsage(input: PlanReportInput): HostUsage[] {
  const { plan, hosts } = input;
  return hosts.map((h) => {
    const mine = plan.assignments.filter((a) => a.host === h.id);
    const busy = mine.reduce((sum, a) => sum + (a.end - a.start), 0);
    const slots = Math.max(h.maxJobs, mine.length > 0 ? 1 : 0);
    const capacity = slots * plan.makespan;
    const learned = input.learnedSpeeds?.get(h.id);
    return {
      host: h.id,
      slots: h.maxJobs,
      speedFactor: h.speedFactor,
      ...(learned !== undefined ? { learnedSpeed: round(learned) } : {}),
      jobs: mine.length,
      busySeconds: round(busy),
      utilisation: capacity > 0 ? round(busy / capacity) : 0,
    };
  });
}

/** The `--json` shape: stable field names, times in seconds from the start. */
export function planToJson(input: PlanReportInput): object {
  const { plan, jobs } = input;
  const critical = new Set(plan.criticalPath);
  return {
    makespan: round(plan.makespan),
    lowerBound: round(plan.lowerBound),
    policy: plan.policy,
    candidates: Object.fromEntries(Object.entries(plan.candidates).map(([k, v]) => [k, round(v)])),
    machinesSource: input.machinesSource,
    jobs: sortedAssignments(plan).map((a) => {
      const job = jobs.get(a.jobId);
      return {
        drvPath: a.jobId,
        name: job?.name ?? a.jobId,
        action: job?.action ?? 'build',
        ...(job?.transfer ? { from: job.transfer.from, bytes: job.transfer.bytes, paths: job.transfer.paths } : {}),
        ...(job?.transfer?.onBuilder ? { fetchedOn: 'builder' } : {}),
        system: job?.system ?? '',
        host: a.host,
        start: round(a.start),
        end: round(a.end),
        estimate: job ? { seconds: round(job.duration), source: job.estimateSource } : undefined,
        criticalPath: critical.has(a.jobId),
        why: job ? jobReason(job, a.host, input, critical.has(a.jobId)) : undefined,
      };
    }),
    criticalPath: plan.criticalPath,
    hosts: hostUsage(input),
    alreadyBuilt: input.alreadyBuilt,
    counts: counts(input),
    onBuilders: (input.held ?? []).map((h) => ({ drvPath: h.drvPath, name: h.name, host: h.host, paths: h.paths, copyHere: h.copyHere })),
    ...(input.substituters ? { substituters: input.substituters } : {}),
  };
}

export function planToText(input: PlanReportInput, opts: { color: boolean; width?: number }): string {
  const { plan, jobs } = input;
  const critical = new Set(plan.criticalPath);
  const assignments = sortedAssignments(plan);
  const rows = assignments.map((a) => {
    const job = jobs.get(a.jobId);
    const name = job?.name ?? a.jobId;
    const est = !job ? '' : job.transfer ? `${formatDuration(job.duration)} (${formatBytes(job.transfer.bytes)})` : `${formatDuration(job.duration)} (${job.estimateSource})`;
    const why = job ? jobReason(job, a.host, input, critical.has(a.jobId)) : '';
    return [critical.has(a.jobId) ? `* ${name}` : `  ${name}`, a.host, formatDuration(a.start), formatDuration(a.end), est, why];
  });
  const table = renderTable(['  derivation', 'host', 'start', 'finish', 'estimate', 'why'], rows, new Set([2, 3]), {
    width: opts.width,
    wrap: ['  derivation', 'estimate', 'why'],
    dropOrder: ['estimate', 'start'],
    style: (row, _column, text) => (opts.color && critical.has(assignments[row]!.jobId) ? `\x1b[1m${text}\x1b[22m` : text),
  });
  return [table, '', wrapLongLines(summary(input), opts.width)].join('\n');
}

function summary(input: PlanReportInput): string {
  const { plan, jobs } = input;
  const names = plan.criticalPath.map((id) => jobs.get(id)?.name ?? id);
  const path = names.length > 8 ? [...names.slice(0, 3), `… ${names.length - 6} more …`, ...names.slice(-3)] : names;
  const others = Object.entries(plan.candidates)
    .filter(([k]) => k !== plan.policy)
    .map(([k, v]) => `${k} ${formatDuration(v)}`)
    .join(', ');
  const usage = hostUsage(input)
    .map((u) => `  ${u.host.padEnd(12)} ${String(u.jobs).padStart(5)} jobs  ${String(u.slots).padStart(2)} slots  speed ${u.speedFactor}${u.learnedSpeed !== undefined ? ` (learned ${u.learnedSpeed.toFixed(2)})` : ''}  ${Math.round(u.utilisation * 100)}% busy`)
    .join('\n');
  const sources = { history: 0, rules: 0, default: 0 };
  for (const j of jobs.values()) if (!j.transfer) sources[j.estimateSource]++;
  const c = counts(input);
  const fetchPart = c.fetch > 0 ? `, ${c.fetch} to fetch (${formatBytes(c.downloadBytes)} download, ${formatBytes(c.narBytes)} unpacked)` : '';
  const stay = (input.held ?? []).filter((h) => !h.copyHere);
  const heldPart = c.copy > 0 || stay.length > 0 ? `, ${c.copy + stay.length} on builders (${c.copy} copied here, ${stay.length} used there)` : '';
  return [
    `* = critical path (${names.length} derivations): ${path.join(' → ') || '—'}`,
    `estimated makespan ${formatDuration(plan.makespan)} (lower bound ${formatDuration(plan.lowerBound)}), policy ${plan.policy}${others ? `; alternatives: ${others}` : ''}`,
    `${c.build} to build${fetchPart}${heldPart}, ${input.alreadyBuilt.length} already built; estimates: ${sources.history} from history, ${sources.rules} from rules, ${sources.default} defaults`,
    ...stay.slice(0, 5).map((h) => `  on builder ${h.host}: ${h.name} (used there, not copied)`),
    ...(stay.length > 5 ? [`  … ${stay.length - 5} more on builders`] : []),
    `machines from ${input.machinesSource}:`,
    usage,
  ].join('\n');
}

/** How many jobs of each action, and the bytes the fetches download (as `nix-build --dry-run` says). */
export function counts(input: Pick<PlanReportInput, 'jobs'>) {
  let build = 0;
  let fetch = 0;
  let copy = 0;
  let downloadBytes = 0;
  let narBytes = 0;
  for (const j of input.jobs.values()) {
    if (j.action === 'fetch') {
      fetch++;
      downloadBytes += j.transfer!.bytes;
      narBytes += j.transfer!.narBytes ?? j.transfer!.bytes;
    } else if (j.action === 'copy') copy++;
    else build++;
  }
  return { build, fetch, copy, downloadBytes, narBytes };
}

function sortedAssignments(plan: Plan) {
  return [...plan.assignments].sort((a, b) => a.start - b.start || a.end - b.end || a.jobId.localeCompare(b.jobId));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
