/**
 * `npm run bench [plan [DAG folder]|build|failover|cache|transfer [case|case…]]`: plan quality and speed
 * on the nixpkgs DAGs in fixtures/dags (or the folder given, or
 * `$OFFLOAD_BENCH_DAGS`), then
 * real builds side by side with Nix's own build-remote on the test cluster,
 * binary caches first (`cache`) against nix-build with the same cache, and
 * big and many-small transfers (`transfer`).
 * Numbers are printed, never asserted: benchmarks are not tests.
 */
import { join } from 'node:path';
import { ensureFreshBundle } from '../scripts/freshBundle.js';
import { runBuildBench } from './buildVsNix.js';
import { runPlanBench } from './plan.js';

// The builds run `node bin/offload.js`: measure the sources as they are, not an older dist/.
await ensureFreshBundle(join(import.meta.dirname, '..'));

const only = process.argv[2];
if (!only || only === 'plan') runPlanBench(process.argv[3] ?? process.env.OFFLOAD_BENCH_DAGS);
if (!only || only === 'build') await runBuildBench();
if (!only || only === 'failover') await (await import('./failover.js')).runFailoverBench();
if (!only || only === 'cache') await (await import('./cacheVsNix.js')).runCacheBench();
if (!only || only === 'fleet') await (await import('./fleet.js')).runFleetBench();
if (!only || only === 'transfer') await (await import('./transfer.js')).runTransferBench(process.argv[3]);
