/**
 * Failover: the wide DAG (leaves × sleep + a top reading them) on the test
 * cluster, once undisturbed and once with a builder SIGKILLed (sshd and its
 * builds) a third of the way through. Reports both makespans and how many
 * jobs ran again. The leaves sleep with /bin/sleep: builders see PATH as
 * /path-not-set, so a bare `sleep` (as in wideDag.nix) does not run.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startCluster, type TestCluster } from '../scripts/cluster/testCluster.js';

const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const nixEnv = { ...process.env, NIX_REMOTE: 'local', NIX_CONFIG: 'substituters =\nsandbox = false' };

const LEAVES = 30;
const SLEEP = 1;
/** The builder killed in the faulty run: the one with the most slots. */
const VICTIM = 'aquamarine';

const wideDag = `{ nonce, n, sleep }:
let
  leaf = i: derivation {
    name = "leaf-\${toString i}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "/bin/sleep \${sleep}; echo \${nonce}-\${toString i} > $out" ];
  };
  leaves = builtins.genList leaf n;
in
derivation {
  name = "top-\${toString n}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "for f in \${builtins.concatStringsSep " " (map toString leaves)}; do read l < $f; echo $l; done > $out" ];
}`;

async function instantiate(nonce: string): Promise<string> {
  const { stdout } = await run(
    'nix-instantiate',
    ['-E', `(${wideDag}) { nonce = "${nonce}"; n = ${LEAVES}; sleep = "${SLEEP}"; }`],
    { env: nixEnv },
  );
  return stdout.trim();
}

interface RunOutcome {
  makespan: number;
  rerun: number;
  code: number;
}

/** `offload build --json`; `during` runs alongside (e.g. kills a builder). */
async function offloadBuild(cluster: TestCluster, drv: string, during?: () => Promise<void>): Promise<RunOutcome> {
  const args = [join(ROOT, 'bin/offload.js'), 'build', '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--json', drv];
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
    const nonce = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    const calm = await offloadBuild(cluster, await instantiate(`calm-${nonce}`));
    const killAt = calm.makespan / 3;
    const faulty = await offloadBuild(cluster, await instantiate(`fault-${nonce}`), async () => {
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
