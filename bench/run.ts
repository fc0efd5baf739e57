/**
 * `npm run bench [plan [DAG folder]|build|failover]`: plan quality and speed
 * on the nixpkgs DAGs in fixtures/dags (or the folder given, or
 * `$OFFLOAD_BENCH_DAGS`), then
 * real builds side by side with Nix's own build-remote on the test cluster.
 * Numbers are printed, never asserted: benchmarks are not tests.
 */
import { runBuildBench } from './buildVsNix.js';
import { runPlanBench } from './plan.js';

const only = process.argv[2];
if (!only || only === 'plan') runPlanBench(process.argv[3] ?? process.env.OFFLOAD_BENCH_DAGS);
if (!only || only === 'build') await runBuildBench();
if (!only || only === 'failover') await (await import('./failover.js')).runFailoverBench();
