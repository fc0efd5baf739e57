/**
 * Binary caches first, side by side on the same test cluster (3 builders ×
 * 2 slots, local max-jobs 0): 200 leaves, 150 of them in a signed binary
 * cache served over HTTP on loopback, plus a top. Nix's own
 * `nix-build --builders` against `offload build`, each with fresh
 * derivations and a cache filled for it. The cached leaves are built on a
 * fourth builder (`forge`, used by neither run) and pushed from there, so
 * the local store has never seen them.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { defaultBuilders } from '../scripts/cluster/builderSpec.js';
import { serveDirectory } from '../scripts/cluster/cacheServer.js';
import { startCluster, type TestCluster } from '../scripts/cluster/testCluster.js';
import { freshNonce, nixEnv, ROOT } from './wideDag.js';

const run = promisify(execFile);
const LEAVES = 200;
const CACHED = 150;

interface Measured {
  seconds: number;
  built: number;
  fetched: number;
  peakRssMiB: number;
}

async function instantiate(nonce: string, carrying = 0): Promise<string> {
  const args = [join(ROOT, 'bench/wideDag.nix'), '--argstr', 'nonce', nonce, '--arg', 'n', String(LEAVES), '--argstr', 'sleep', '0', '--arg', 'carrying', String(carrying)];
  return (await run('nix-instantiate', args, { env: nixEnv })).stdout.trim();
}

/** Runs a command to its end; wall seconds, output, and the peak RSS of its main process. */
function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ seconds: number; stdout: string; stderr: string; peakRssMiB: number }> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peakKiB = 0;
    const poll = setInterval(() => void readFile(`/proc/${child.pid}/status`, 'utf8').then((s) => (peakKiB = Math.max(peakKiB, Number(/VmHWM:\s+(\d+)/.exec(s)?.[1] ?? 0))), () => undefined), 50);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(poll);
      const seconds = (performance.now() - start) / 1000;
      if (code === 0) resolve({ seconds, stdout, stderr, peakRssMiB: peakKiB / 1024 });
      else reject(new Error(`${cmd} exited ${code}: ${stderr.slice(-4000)}`));
    });
  });
}

/** Builds the carrier of the first CACHED leaves on forge and pushes those leaves to `cacheDir`, signed. */
async function fillCache(cluster: TestCluster, nonce: string, cacheDir: string, secretKey: string): Promise<void> {
  const carrier = await instantiate(nonce, CACHED);
  const machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--hosts', 'forge', '--max-jobs', '0', '--no-substitute', '--no-history'];
  await measure(process.execPath, [join(ROOT, 'bin/offload.js'), 'build', carrier, ...machines], nixEnv);
  const refs = (await run('nix-store', ['--query', '--references', carrier], { env: nixEnv })).stdout.split('\n').filter((p) => p.endsWith('.drv'));
  const outs = (await run('nix-store', ['--query', '--outputs', ...refs], { env: nixEnv })).stdout.trim().split('\n');
  const copy = await cluster.runOnBuilder('forge', ['nix', '--extra-experimental-features', 'nix-command', 'copy', '--to', `file://${cacheDir}?secret-key=${secretKey}`, ...outs]);
  if (copy.code !== 0) throw new Error(`nix copy on forge failed: ${copy.stderr}`);
}

/** "these 51 derivations will be built" / "this derivation will be built", and the same for fetched paths. */
function nixCounts(stderr: string): { built: number; fetched: number } {
  const count = (what: RegExp, one: RegExp) => Number(what.exec(stderr)?.[1] ?? (one.test(stderr) ? 1 : 0));
  return {
    built: count(/these (\d+) derivations will be built/, /this derivation will be built/),
    fetched: count(/these (\d+) paths will be fetched/, /this path will be fetched/),
  };
}

export async function runCacheBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'offload-bench-cache-'));
  const builders = [{ name: 'forge', maxJobs: 2, systems: defaultBuilders()[0]!.systems }, ...defaultBuilders().map((b) => ({ ...b, maxJobs: 2 }))];
  const cluster = await startCluster({ dir: join(dir, 'cluster'), builders });
  const servers: Array<{ close(cb: () => void): void }> = [];
  try {
    const secretKey = join(dir, 'secret.key');
    await run('nix-store', ['--generate-binary-cache-key', 'offload-bench-1', secretKey, join(dir, 'public.key')], { env: nixEnv });
    const publicKey = (await readFile(join(dir, 'public.key'), 'utf8')).trim();
    // Nix must not see forge either: its machines file without that line.
    const nixMachines = join(dir, 'machines-without-forge.nix');
    await writeFile(nixMachines, (await readFile(cluster.nixMachinesFile, 'utf8')).split('\n').filter((l) => !/^\S*forge\s/.test(l)).join('\n'));

    const prepare = async (label: string) => {
      const nonce = `${label}-${freshNonce()}`;
      const cacheDir = join(dir, `${label}-cache`);
      await mkdir(cacheDir, { mode: 0o777 });
      await fillCache(cluster, nonce, cacheDir, secretKey);
      const served = await serveDirectory(cacheDir);
      servers.push(served.server);
      return { top: await instantiate(nonce), url: served.url };
    };

    const nixCase = await prepare('nix');
    const nixRun = await measure(
      'nix-build',
      ['--max-jobs', '0', '--builders', `@${nixMachines}`, '--option', 'substituters', nixCase.url, '--option', 'trusted-public-keys', publicKey, '--no-out-link', nixCase.top],
      { ...nixEnv, NIX_SSHOPTS: cluster.nixSshOpts },
    );
    const nix: Measured = { seconds: nixRun.seconds, ...nixCounts(nixRun.stderr), peakRssMiB: nixRun.peakRssMiB };

    const ourCase = await prepare('offload');
    const ourRun = await measure(
      process.execPath,
      [join(ROOT, 'bin/offload.js'), 'build', ourCase.top, '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--exclude-hosts', 'forge', '--max-jobs', '0', '--substituters', ourCase.url, '--option', 'trusted-public-keys', publicKey, '--json'],
      nixEnv,
    );
    const jobs = (JSON.parse(ourRun.stdout) as { jobs: Array<{ status: string }> }).jobs;
    const ours: Measured = {
      seconds: ourRun.seconds,
      built: jobs.filter((j) => j.status === 'built').length,
      fetched: jobs.filter((j) => j.status === 'fetched').length,
      peakRssMiB: ourRun.peakRssMiB,
    };

    console.log(`\ncache: ${LEAVES} trivial leaves (${CACHED} in a signed HTTP cache on loopback) + top; 3 builders × 2 slots, local max-jobs 0`);
    console.log(`${''.padEnd(10)} ${'wall'.padStart(8)} ${'built'.padStart(6)} ${'fetched'.padStart(8)} ${'peak RSS'.padStart(9)}`);
    for (const [name, m] of [['nix-build', nix], ['offload', ours]] as const) {
      console.log(`${name.padEnd(10)} ${m.seconds.toFixed(1).padStart(7)}s ${String(m.built).padStart(6)} ${String(m.fetched).padStart(8)} ${m.peakRssMiB.toFixed(0).padStart(6)} MiB`);
    }
    console.log(`nix/offload wall: ${(nix.seconds / ours.seconds).toFixed(2)}×; counts ${nix.built === ours.built && nix.fetched === ours.fetched ? 'equal' : 'DIFFER'}`);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runCacheBench();
}
