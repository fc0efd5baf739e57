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
  /** The runner's builds, from its --json-events: seconds since its own start. */
  builds: Array<{ name: string; start: number; end: number }>;
}

/** `offload build` as a runner of its own; peak RSS sampled from /proc while it runs. */
async function runner(cluster: TestCluster, state: string, drv: string, args: string[] = []): Promise<Outcome> {
  const home = await mkdtemp(join(tmpdir(), 'offload-bench-runner-'));
  const start = performance.now();
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin/offload.js'), 'build', '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--json-events', ...args, drv],
    // The URL (with its password) in the environment, not on a command line every user can read.
    { env: { ...nixEnv, XDG_CACHE_HOME: home, OFFLOAD_STATE: state }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let events = '';
  child.stdout.on('data', (d: Buffer) => (events += d.toString()));
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
  return { seconds: (performance.now() - start) / 1000, peakRssKiB: peak, builds: buildsOf(events) };
}

function buildsOf(ndjson: string): Outcome['builds'] {
  const started = new Map<string, number>();
  const builds: Outcome['builds'] = [];
  for (const line of ndjson.split('\n')) {
    if (!line.startsWith('{')) continue;
    const e = JSON.parse(line) as { type: string; jobId?: string; name?: string; time?: number; status?: string };
    if (e.type === 'jobStarted') started.set(e.jobId!, e.time!);
    if (e.type === 'jobFinished' && e.status === 'built') builds.push({ name: e.name!, start: started.get(e.jobId!)!, end: e.time! });
  }
  return builds.sort((a, b) => a.start - b.start);
}

/** A chain's time split: before its first link started, between links (waiting for a slot, or a copy), and building. */
function chainSplit(chain: Outcome): string {
  const links = chain.builds;
  const first = links[0]?.start ?? 0;
  const between = links.slice(1).reduce((sum, link, i) => sum + (link.start - links[i]!.end), 0);
  const building = links.reduce((sum, link) => sum + (link.end - link.start), 0);
  return `${first.toFixed(1)} + ${between.toFixed(1)} + ${building.toFixed(1)}`;
}

async function chainVsBatch(cluster: TestCluster, server: PostgresServer): Promise<void> {
  const nonce = freshNonce();
  const state = server.url;
  // Each shape alone first: its makespan is the reference, and the shared history then knows both
  // shapes, as a fleet's does. Without it the batch's leaves would be planned with the built-in
  // prior (90 s for a normal derivation) and outrank the chain's learned 3 s links.
  const alone = await runner(cluster, state, await instantiateChainDag(`alone-${nonce}`, CHAIN.links, CHAIN.sleep));
  const batchAlone = await runner(cluster, state, await instantiateWideDag(`alone-batch-${nonce}`, BATCH.leaves, BATCH.sleep));
  const together = async (label: string, extra: string[]) => {
    const [chain, batch] = await Promise.all([instantiateChainDag(`${label}-${nonce}`, CHAIN.links, CHAIN.sleep), instantiateWideDag(`${label}-batch-${nonce}`, BATCH.leaves, BATCH.sleep)]);
    const batchRun = runner(cluster, state, batch, extra);
    // The batch fills every slot first; the chain arrives on a saturated fleet.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const chainRun = runner(cluster, state, chain, extra);
    const [c, b] = await Promise.all([chainRun, batchRun]);
    return { chain: c, batch: b };
  };
  const priority = await together('priority', []);
  const arrival = await together('arrival', ['--slot-priority', 'arrival']);
  const critical = CHAIN.links * CHAIN.sleep;
  console.log(`\nfleet, chain vs batch: a chain of ${CHAIN.links} × sleep ${CHAIN.sleep} (critical path ${critical} s) and ${BATCH.leaves} leaves × sleep ${BATCH.sleep} + top, two runners, 3 builders × 2 slots`);
  console.log(`(chain split: s before its first link + s between links + s in its links, as its own events say)`);
  console.log(`${'run'.padEnd(44)} ${'chain'.padStart(7)} ${'vs alone'.padStart(9)} ${'chain split'.padStart(18)} ${'batch'.padStart(7)} ${'peak RSS'.padStart(9)}`);
  const row = (label: string, chain: Outcome | undefined, batch?: Outcome) =>
    console.log(
      [
        label.padEnd(44),
        chain ? `${chain.seconds.toFixed(1).padStart(6)}s` : '      —',
        chain ? `${(chain.seconds / alone.seconds).toFixed(2).padStart(8)}×` : ''.padStart(9),
        (chain ? chainSplit(chain) : '').padStart(18),
        batch ? `${batch.seconds.toFixed(1).padStart(6)}s` : '      —',
        `${Math.round(Math.max(chain?.peakRssKiB ?? 0, batch?.peakRssKiB ?? 0) / 1024)} MiB`.padStart(9),
      ].join(' '),
    );
  row('chain alone', alone);
  row('batch alone', undefined, batchAlone);
  row('with the batch, fleet-wide priority', priority.chain, priority.batch);
  row('with the batch, slots in arrival order', arrival.chain, arrival.batch);
}

async function manyRunners(cluster: TestCluster, server: PostgresServer): Promise<void> {
  const slots = cluster.builders.reduce((n, b) => n + b.maxJobs, 0);
  console.log(`\nfleet, N runners at once, each ${RUNNER_DAG.leaves} leaves × sleep ${RUNNER_DAG.sleep} + top, 3 builders × 2 slots (${slots} slots), one --state`);
  console.log('(slots busy: build seconds of all runners ÷ (makespan × slots); per build: mean seconds of one leaf, copies included)');
  console.log(`${'runners'.padEnd(8)} ${'makespan'.padStart(9)} ${'lower bound'.padStart(12)} ${'ratio'.padStart(7)} ${'slots busy'.padStart(11)} ${'per build'.padStart(10)} ${'peak RSS/runner'.padStart(16)}`);
  for (const n of [3, 6, 12]) {
    const nonce = freshNonce();
    const drvs = await Promise.all(Array.from({ length: n }, (_, i) => instantiateWideDag(`fleet${n}-${i}-${nonce}`, RUNNER_DAG.leaves, RUNNER_DAG.sleep)));
    const start = performance.now();
    const outcomes = await Promise.all(drvs.map((drv) => runner(cluster, server.url, drv)));
    const makespan = (performance.now() - start) / 1000;
    // Each runner's leaves, then its top (which sleeps 0): work ÷ slots, or one leaf then the top.
    const bound = Math.max((n * RUNNER_DAG.leaves * RUNNER_DAG.sleep) / slots, RUNNER_DAG.sleep);
    const rss = Math.max(...outcomes.map((o) => o.peakRssKiB));
    const builds = outcomes.flatMap((o) => o.builds);
    const busy = builds.reduce((sum, b) => sum + (b.end - b.start), 0) / (makespan * slots);
    const leaves = builds.filter((b) => b.name.startsWith('leaf-'));
    const perBuild = leaves.reduce((sum, b) => sum + (b.end - b.start), 0) / Math.max(leaves.length, 1);
    console.log(
      `${String(n).padEnd(8)} ${makespan.toFixed(1).padStart(8)}s ${bound.toFixed(1).padStart(11)}s ${(makespan / bound).toFixed(2).padStart(6)}× ${`${Math.round(busy * 100)} %`.padStart(11)} ${`${perBuild.toFixed(2)}s`.padStart(10)} ${`${Math.round(rss / 1024)} MiB`.padStart(16)}`,
    );
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
