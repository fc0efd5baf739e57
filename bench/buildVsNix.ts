/**
 * Side by side on the same test cluster (3 builders × 2 slots) and DAG shapes:
 * Nix's own `nix-build --max-jobs 0 --builders @machines.nix` against
 * `offload build --max-jobs 0`, with fresh derivations for every run.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultBuilders } from '../scripts/cluster/builderSpec.js';
import { startCluster, type TestCluster } from '../scripts/cluster/testCluster.js';

import { freshNonce, instantiateWideDag, nixEnv, ROOT } from './wideDag.js';

export interface BuildCase {
  label: string;
  leaves: number;
  sleep: number;
  /** Seconds no scheduler can beat on 6 slots (leaves in waves, then the top). */
  lowerBound: number;
}

export const buildCases: BuildCase[] = [
  { label: '60 leaves × sleep 1 + top', leaves: 60, sleep: 1, lowerBound: 11 },
  { label: '200 trivial leaves + top', leaves: 200, sleep: 0, lowerBound: 0 },
];

async function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}: ${err}`))));
  });
  return (performance.now() - start) / 1000;
}

function nixBuild(cluster: TestCluster, drv: string): Promise<number> {
  return timed('nix-build', ['--max-jobs', '0', '--builders', `@${cluster.nixMachinesFile}`, '--no-out-link', drv], { ...nixEnv, NIX_SSHOPTS: cluster.nixSshOpts });
}

function offloadBuild(cluster: TestCluster, drv: string): Promise<number> {
  return timed(process.execPath, [join(ROOT, 'bin/offload.js'), 'build', '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--no-out-link', drv], nixEnv);
}

export async function runBuildBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'offload-bench-'));
  const cluster = await startCluster({ dir, builders: defaultBuilders().map((b) => ({ ...b, maxJobs: 2 })) });
  try {
    console.log('\nbuild: Nix build-remote vs offload, same cluster (3 builders × 2 slots), fresh derivations each run');
    console.log(`${'case'.padEnd(28)} ${'nix'.padStart(8)} ${'offload'.padStart(8)} ${'nix/offload'.padStart(12)} ${'offload/LB'.padStart(11)}`);
    for (const c of buildCases) {
      const nonce = freshNonce();
      const nix = await nixBuild(cluster, await instantiateWideDag(`nix-${nonce}`, c.leaves, c.sleep));
      const ours = await offloadBuild(cluster, await instantiateWideDag(`offload-${nonce}`, c.leaves, c.sleep));
      const lb = c.lowerBound > 0 ? (ours / c.lowerBound).toFixed(2) : '—';
      console.log(`${c.label.padEnd(28)} ${nix.toFixed(1).padStart(7)}s ${ours.toFixed(1).padStart(7)}s ${(nix / ours).toFixed(2).padStart(11)}× ${lb.padStart(11)}`);
    }
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runBuildBench();
}
