/**
 * A fleet of runners on one test cluster (3 builders × 2 slots), sharing
 * slots and history through a private PostgreSQL server:
 *  - chain vs batch: one runner builds a long chain (the critical path), one
 *    a wide batch of short jobs, both at once; the chain's makespan against
 *    running it alone, with fleet-wide priority (the default) and with slots
 *    served in arrival order (`--slot-priority arrival`);
 *  - 3, 6 and 12 runners at once, each building its own wide DAG: the total
 *    makespan against the lower bound (total work ÷ total slots, or the
 *    longest chain).
 * Every runner is its own "machine": its own cache and history dirs.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultBuilders } from '../scripts/cluster/builderSpec.js';
import { startPostgres, type PostgresServer } from '../scripts/cluster/postgresServer.js';
import { startCluster, type TestCluster } from '../scripts/cluster/testCluster.js';
import { freshNonce, instantiateChainDag, instantiateWideDag, nixEnv, ROOT } from './wideDag.js';

const CHAIN = { links: 6, sleep: 3 };
const BATCH = { leaves: 48, sleep: 2 };
const RUNNER_DAG = { leaves: 12, sleep: 2 };

interface Outcome {
  /** Wall-clock seconds from spawn to exit. */
  seconds: number;
  peakRssKiB: number;
}

/** `offload build` as a runner of its own; peak RSS sampled from /proc while it runs. */
async function runner(cluster: TestCluster, drv: string, args: string[]): Promise<Outcome> {
  const home = await mkdtemp(join(tmpdir(), 'offload-bench-runner-'));
  const start = performance.now();
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin/offload.js'), 'build', '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', ...args, drv],
    { env: { ...nixEnv, XDG_CACHE_HOME: home }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let peak = 0;
  const sample = setInterval(() => {
    try {
      const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (hwm) peak = Math.max(peak, Number(hwm[1]));
    } catch {
      // Exited between samples.
    }
  }, 100);
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (c) => resolve(c ?? 1));
  });
  clearInterval(sample);
  await rm(home, { recursive: true, force: true });
  if (code !== 0) throw new Error(`offload exited ${code}: ${err}`);
  return { seconds: (performance.now() - start) / 1000, peakRssKiB: peak };
}

async function chainVsBatch(cluster: TestCluster, server: PostgresServer): Promise<void> {
  const nonce = freshNonce();
  const state = ['--state', server.url];
  // Each shape alone first: its makespan is the reference, and the shared history then knows both
  // shapes, as a fleet's does. Without it the batch's leaves would be planned with the built-in
  // prior (90 s for a normal derivation) and outrank the chain's learned 3 s links.
  const alone = await runner(cluster, await instantiateChainDag(`alone-${nonce}`, CHAIN.links, CHAIN.sleep), state);
  const batchAlone = await runner(cluster, await instantiateWideDag(`alone-batch-${nonce}`, BATCH.leaves, BATCH.sleep), state);
  const together = async (label: string, extra: string[]) => {
    const [chain, batch] = await Promise.all([instantiateChainDag(`${label}-${nonce}`, CHAIN.links, CHAIN.sleep), instantiateWideDag(`${label}-batch-${nonce}`, BATCH.leaves, BATCH.sleep)]);
    const batchRun = runner(cluster, batch, [...state, ...extra]);
    // The batch fills every slot first; the chain arrives on a saturated fleet.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const chainRun = runner(cluster, chain, [...state, ...extra]);
    const [c, b] = await Promise.all([chainRun, batchRun]);
    return { chain: c, batch: b };
  };
  const priority = await together('priority', []);
  const arrival = await together('arrival', ['--slot-priority', 'arrival']);
  const critical = CHAIN.links * CHAIN.sleep;
  console.log(`\nfleet, chain vs batch: a chain of ${CHAIN.links} × sleep ${CHAIN.sleep} (critical path ${critical} s) and ${BATCH.leaves} leaves × sleep ${BATCH.sleep} + top, two runners, 3 builders × 2 slots`);
  console.log(`${'run'.padEnd(44)} ${'chain'.padStart(7)} ${'vs alone'.padStart(9)} ${'batch'.padStart(7)} ${'peak RSS'.padStart(9)}`);
  const row = (label: string, chain: Outcome, batch?: Outcome) =>
    console.log(
      `${label.padEnd(44)} ${chain.seconds.toFixed(1).padStart(6)}s ${(chain.seconds / alone.seconds).toFixed(2).padStart(8)}× ${batch ? `${batch.seconds.toFixed(1).padStart(6)}s` : '      —'} ${`${Math.round(Math.max(chain.peakRssKiB, batch?.peakRssKiB ?? 0) / 1024)} MiB`.padStart(9)}`,
    );
  row('chain alone', alone);
  console.log(`${'batch alone'.padEnd(44)} ${'—'.padStart(7)} ${''.padStart(9)} ${`${batchAlone.seconds.toFixed(1)}s`.padStart(7)} ${`${Math.round(batchAlone.peakRssKiB / 1024)} MiB`.padStart(9)}`);
  row('with the batch, fleet-wide priority', priority.chain, priority.batch);
  row('with the batch, slots in arrival order', arrival.chain, arrival.batch);
}

async function manyRunners(cluster: TestCluster, server: PostgresServer): Promise<void> {
  const slots = cluster.builders.reduce((n, b) => n + b.maxJobs, 0);
  console.log(`\nfleet, N runners at once, each ${RUNNER_DAG.leaves} leaves × sleep ${RUNNER_DAG.sleep} + top, 3 builders × 2 slots (${slots} slots), one --state`);
  console.log(`${'runners'.padEnd(8)} ${'makespan'.padStart(9)} ${'lower bound'.padStart(12)} ${'ratio'.padStart(7)} ${'peak RSS/runner'.padStart(16)}`);
  for (const n of [3, 6, 12]) {
    const nonce = freshNonce();
    const drvs = await Promise.all(Array.from({ length: n }, (_, i) => instantiateWideDag(`fleet${n}-${i}-${nonce}`, RUNNER_DAG.leaves, RUNNER_DAG.sleep)));
    const start = performance.now();
    const outcomes = await Promise.all(drvs.map((drv) => runner(cluster, drv, ['--state', server.url])));
    const makespan = (performance.now() - start) / 1000;
    // Each runner's leaves, then its top (which sleeps 0): work ÷ slots, or one leaf then the top.
    const bound = Math.max((n * RUNNER_DAG.leaves * RUNNER_DAG.sleep) / slots, RUNNER_DAG.sleep);
    const rss = Math.max(...outcomes.map((o) => o.peakRssKiB));
    console.log(`${String(n).padEnd(8)} ${makespan.toFixed(1).padStart(8)}s ${bound.toFixed(1).padStart(11)}s ${(makespan / bound).toFixed(2).padStart(6)}× ${`${Math.round(rss / 1024)} MiB`.padStart(16)}`);
  }
}

export async function runFleetBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'offload-bench-fleet-'));
  const [cluster, server] = await Promise.all([startCluster({ dir, builders: defaultBuilders().map((b) => ({ ...b, maxJobs: 2 })) }), startPostgres('bench-fleet')]);
  try {
    await chainVsBatch(cluster, server);
    await manyRunners(cluster, server);
  } finally {
    await Promise.all([cluster.stop(), server.dispose()]);
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runFleetBench();
}
