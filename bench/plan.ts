import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { loadJsonClosure } from '../src/drv/loadClosure.js';
import { parseDrv } from '../src/drv/parseDrv.js';
import { printDrv } from '../src/drv/printDrv.js';
import { performance } from 'node:perf_hooks';
import { loadDurationRules } from '../src/cli/durationRulesFile.js';
import { makeJob } from '../src/schedule/makeJob.js';
import { simulateNixLike } from './nixLikePolicy.js';
import { planBuild } from '../src/schedule/planBuild.js';
import { LOCAL_HOST, type Host, type Job } from '../src/schedule/types.js';
import { generateLayeredDag } from './dagGenerator.js';
import { loadDagFile } from './dagFile.js';

/**
 * The nixpkgs DAGs in the repository (fixtures/dags/README.md); another
 * folder of the same shape (`*.json.gz` + `durations.json`) can be given as
 * `npm run bench -- plan DIR` or `$OFFLOAD_BENCH_DAGS`.
 */
export const DEFAULT_DAGS = fileURLToPath(new URL('../fixtures/dags/', import.meta.url));
const ALL_SYSTEMS = ['x86_64-linux', 'aarch64-linux', 'riscv64-linux'];

function host(id: string, over: Partial<Host>): Host {
  return {
    id,
    systems: ['x86_64-linux'],
    supportedFeatures: [],
    mandatoryFeatures: [],
    maxJobs: 1,
    speedFactor: 1,
    isLocal: id === LOCAL_HOST,
    ...over,
  };
}

/** Local with max-jobs 0: only builtin downloads run here, as in the seed setup. */
const local = host(LOCAL_HOST, { maxJobs: 0 });

export const clusters: Record<string, Host[]> = {
  seed: [
    local,
    ...(
      [
        ['aquamarine', 3],
        ['ruby', 2],
        ['kana', 2],
      ] as const
    ).map(([id, maxJobs]) =>
      host(id, { maxJobs, systems: ALL_SYSTEMS, supportedFeatures: ['benchmark', 'big-parallel', 'kvm'] }),
    ),
  ],
  mixed: [
    local,
    host('titan', { maxJobs: 4, speedFactor: 4, supportedFeatures: ['big-parallel', 'kvm'] }),
    host('ruby', { maxJobs: 2 }),
    host('kana', { maxJobs: 2 }),
    host('pine', { maxJobs: 4, systems: ['aarch64-linux'], supportedFeatures: ['big-parallel'] }),
  ],
};

export interface PlanBenchRow {
  dag: string;
  cluster: string;
  jobs: number;
  planMs: number;
  makespan: number;
  lowerBound: number;
  policy: string;
  nixLike: number;
}

function timeMs<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const v = f();
  return [v, performance.now() - t0];
}

function dagJobs(file: string, rulesPath: string): Job[] {
  const rules = loadDurationRules(rulesPath);
  return loadDagFile(file).map((n) => makeJob(n.drv, n.deps, rules));
}

function fmt(row: PlanBenchRow): string {
  const ratio = (row.makespan / row.lowerBound).toFixed(3);
  const vsNix = (row.nixLike / row.makespan).toFixed(2);
  return [
    row.dag.padEnd(14),
    row.cluster.padEnd(6),
    String(row.jobs).padStart(6),
    `${row.planMs.toFixed(0).padStart(5)} ms`,
    `${row.makespan.toFixed(0).padStart(7)} s`,
    `LB ${row.lowerBound.toFixed(0).padStart(7)} s`,
    `×LB ${ratio}`,
    `nix-like ${row.nixLike.toFixed(0).padStart(7)} s`,
    `nix/offload ${vsNix}`,
    row.policy,
  ].join('  ');
}

/** Plans `jobs` on `hosts` (timed) and simulates the Nix-like policy beside it. */
function benchRow(dag: string, cluster: string, jobs: Job[], hosts: Host[]): PlanBenchRow {
  const [plan, planMs] = timeMs(() => planBuild(jobs, hosts));
  const nix = simulateNixLike(jobs, hosts);
  return { dag, cluster, jobs: jobs.length, planMs, makespan: plan.makespan, lowerBound: plan.lowerBound, policy: plan.policy, nixLike: nix.makespan };
}

/** Plans every DAG in `dags` on both clusters plus a generated 100k DAG; prints a table and returns the rows. */
export function runPlanBench(dags: string = DEFAULT_DAGS, log: (line: string) => void = console.log): PlanBenchRow[] {
  const rows: PlanBenchRow[] = [];
  const rulesPath = join(dags, 'durations.json');
  const files = existsSync(dags) ? readdirSync(dags).filter((f) => f.endsWith('.json.gz')).sort() : [];
  if (files.length === 0) log(`plan bench: no DAGs in ${dags}, only the generated one`);
  log('dag             cluster  jobs   plan      makespan   lower bound  ratio      nix-like          speedup  policy');
  for (const file of files) {
    const jobs = dagJobs(join(dags, file), rulesPath);
    for (const [cluster, hosts] of Object.entries(clusters)) {
      const row = benchRow(file.replace('.json.gz', ''), cluster, jobs, hosts);
      rows.push(row);
      log(fmt(row));
    }
  }
  const firefox = join(dags, 'firefox.json.gz');
  if (existsSync(firefox)) log(parseSpeedLine(firefox));
  const [generated, genMs] = timeMs(() => generateLayeredDag({ jobs: 100_000, seed: 7 }));
  const hosts = clusters['mixed']!;
  const row = benchRow('generated-100k', 'mixed', generated, hosts);
  rows.push(row);
  log(fmt(row));
  log(`(generating the 100k DAG took ${genMs.toFixed(0)} ms; plan times exclude parsing and are cold: first call JITs)`);
  for (const line of targetReport(rows)) log(line);
  return rows;
}

/** The .drv parser on real text: firefox's closure, printed as Nix writes .drv files, then parsed. */
function parseSpeedLine(file: string): string {
  const set = loadJsonClosure(gunzipSync(readFileSync(file)).toString('utf8'), file);
  const texts = [...set.drvs.values()].map((d) => [d.drvPath, printDrv(d)] as const);
  const [, ms] = timeMs(() => {
    for (const [drvPath, text] of texts) parseDrv(text, drvPath);
  });
  return `parsing firefox's ${texts.length} .drv texts took ${ms.toFixed(0)} ms`;
}

/** The plan targets, checked against the rows. */
export function targetReport(rows: PlanBenchRow[]): string[] {
  const real = rows.filter((r) => r.dag !== 'generated-100k');
  const firefox = real.filter((r) => r.dag === 'firefox');
  const big = rows.find((r) => r.dag === 'generated-100k');
  const check = (ok: boolean, what: string) => `${ok ? 'ok  ' : 'MISS'} ${what}`;
  const lines: string[] = [];
  if (firefox.length > 0) {
    lines.push(check(firefox.every((r) => r.planMs < 1000), `firefox planned < 1 s (${firefox.map((r) => r.planMs.toFixed(0)).join(', ')} ms)`));
    const best = Math.max(...firefox.map((r) => r.nixLike / r.makespan));
    lines.push(check(best >= 1.4, `firefox ≥ 1.4× shorter than Nix-like on some cluster (best ${best.toFixed(3)}×)`));
  }
  if (big) lines.push(check(big.planMs < 5000, `100k jobs planned < 5 s (${big.planMs.toFixed(0)} ms)`));
  if (real.length > 0) {
    const worst = Math.max(...real.map((r) => r.makespan / r.lowerBound));
    lines.push(check(worst <= 1.25, `makespan ≤ 1.25× lower bound on every nixpkgs DAG and cluster (worst ${worst.toFixed(3)}×)`));
    lines.push(check(real.every((r) => r.makespan <= r.nixLike + 1e-6), 'never longer than Nix-like'));
  }
  return lines;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) runPlanBench(process.argv[2] ?? process.env.OFFLOAD_BENCH_DAGS);
