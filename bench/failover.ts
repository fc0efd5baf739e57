/**
 * Failover: the wide DAG (leaves × sleep + a top reading them) on the test
 * cluster, once undisturbed and once with a builder SIGKILLed (sshd and its
 * builds) a third of the way through. Reports both makespans and how many
 * jobs ran again.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCluster, type TestCluster } from '../scripts/cluster/testCluster.js';
import { freshNonce, instantiateWideDag, nixEnv, ROOT } from './wideDag.js';

const LEAVES = 30;
const SLEEP = 1;
/** The builder killed in the faulty run: the one with the most slots. */
const VICTIM = 'aquamarine';

interface RunOutcome {
  makespan: number;
  rerun: number;
  code: number;
}

/** `offload build --json`; `during` runs alongside (e.g. kills a builder). */
async function offloadBuild(cluster: TestCluster, drv: string, during?: () => Promise<void>): Promise<RunOutcome> {
  const args = [join(ROOT, 'bin/offload.js'), 'build', '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--no-out-link', '--json', drv];
  const child = spawn(process.execPath, args, { env: nixEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const done = new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
  await during?.();
  const code = await done;
  if (code !== 0) throw new Error(`offload exited ${code}: ${stderr}`);
  const json = JSON.parse(stdout) as { makespan: number; jobs: Array<{ attempts: number }> };
  return { makespan: json.makespan, rerun: json.jobs.filter((j) => j.attempts > 1).length, code };
}

export async function runFailoverBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'offload-bench-failover-'));
  const cluster = await startCluster({ dir });
  try {
    const slots = cluster.builders.reduce((n, b) => n + b.maxJobs, 0);
    const victimSlots = cluster.builder(VICTIM).maxJobs;
    const nonce = freshNonce();
    const calm = await offloadBuild(cluster, await instantiateWideDag(`calm-${nonce}`, LEAVES, SLEEP));
    const killAt = calm.makespan / 3;
    const faulty = await offloadBuild(cluster, await instantiateWideDag(`fault-${nonce}`, LEAVES, SLEEP), async () => {
      await new Promise((resolve) => setTimeout(resolve, killAt * 1000));
      await cluster.kill(VICTIM);
    });
    // Work left after the kill, spread over the slots that survive, plus the top.
    const bound = killAt + (LEAVES * SLEEP * (1 - 1 / 3)) / (slots - victimSlots) + 0.1;
    console.log(`\nfailover: ${LEAVES} leaves × sleep ${SLEEP} + top on ${cluster.builders.length} builders (${slots} slots); ${VICTIM} (${victimSlots} slots) SIGKILLed at ${killAt.toFixed(1)} s`);
    console.log(`${'run'.padEnd(24)} ${'makespan'.padStart(9)} ${'jobs run again'.padStart(15)}`);
    console.log(`${'no fault'.padEnd(24)} ${calm.makespan.toFixed(1).padStart(8)}s ${String(calm.rerun).padStart(15)}`);
    console.log(`${`${VICTIM} killed`.padEnd(24)} ${faulty.makespan.toFixed(1).padStart(8)}s ${String(faulty.rerun).padStart(15)}`);
    console.log(`slowdown ${(faulty.makespan / calm.makespan).toFixed(2)}× (rough bound with the lost slots: ≈${bound.toFixed(1)} s)`);
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runFailoverBench();
}
