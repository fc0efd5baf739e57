/**
 * `npm run bench transfer`: big and many-small transfers, side by side in
 * one run, Nix's `nix-build --max-jobs 0 --builders …` against
 * `offload build --max-jobs 0` on the same two test builders. Each case gets
 * fresh derivations (and fresh inputs) for each side; what a case created is
 * deleted from the local store and the builders' stores before the next one,
 * so the 4 GiB case does not stay on the disk. Peak RSS is the largest
 * single process of each side's process tree (each one's VmHWM, sampled).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostSystem } from '../scripts/cluster/builderSpec.js';
import { startCluster, type TestCluster } from '../scripts/cluster/testCluster.js';
import { watchPeakRss } from '../scripts/peakRss.js';
import { freshNonce, nixEnv, ROOT } from './wideDag.js';

const MiB = 1024 * 1024;

interface Side {
  /** The derivation to build. */
  drv: string;
  /** Local store paths this side created before the build (inputs to upload). */
  created: string[];
  /** In the name of every path this side creates. */
  nonce: string;
}

interface TransferCase {
  label: string;
  /** Bytes that move (NAR bytes, roughly the payload). */
  bytes: number;
  /** Makes one side's derivation (and inputs) from a fresh nonce. */
  prepare(nonce: string, dir: string): Promise<Side>;
  /** Nix has no such path; its nearest equivalent is measured and named here. */
  nixNote?: string;
  /** Extra offload arguments (e.g. --compress). */
  offloadArgs?: string[];
  /** Extra ssh options for Nix's side (e.g. -C), after the cluster's own. */
  nixSshOpts?: string;
}

interface Measured {
  wall: number;
  peakRssMB: number;
}

const cases: TransferCase[] = [
  {
    label: 'copy back 1 GiB',
    bytes: 1024 * MiB,
    prepare: (nonce) => instantiate(nonce, 'copyBack', { mib: 1024 }),
  },
  {
    label: 'copy back 4 GiB',
    bytes: 4096 * MiB,
    prepare: (nonce) => instantiate(nonce, 'copyBack', { mib: 4096 }),
  },
  {
    // Random bytes do not compress: this is what zlib costs on a fast link, for both.
    label: 'copy back 1 GiB, compressed',
    bytes: 1024 * MiB,
    prepare: (nonce) => instantiate(nonce, 'copyBack', { mib: 1024 }),
    offloadArgs: ['--compress'],
    nixSshOpts: '-C',
    nixNote: 'NIX_SSHOPTS=-C',
  },
  {
    label: 'upload 1 GiB',
    bytes: 1024 * MiB,
    prepare: async (nonce, dir) => {
      const file = join(dir, `upload-${nonce}`);
      await run('/bin/dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=1024', 'status=none']);
      const paths = await addToStore([file]);
      await rm(file, { force: true });
      return { ...(await instantiate(nonce, 'upload', { inputs: paths })), created: paths };
    },
  },
  {
    label: 'builder → builder 1 GiB',
    bytes: 1024 * MiB,
    nixNote: 'Nix: through the local store',
    prepare: (nonce) => instantiate(nonce, 'builderToBuilder', { mib: 1024 }),
  },
  {
    label: '20,000 files (copy back)',
    bytes: 20_000 * 200,
    prepare: (nonce) => instantiate(nonce, 'manyFiles', { files: 20_000 }),
  },
  {
    label: '300 paths (upload)',
    bytes: 300 * 400,
    prepare: async (nonce, dir) => {
      const files = Array.from({ length: 300 }, (_, i) => join(dir, `small-${nonce}-${i}`));
      await Promise.all(files.map((f, i) => writeFile(f, `${nonce} ${i}\n`)));
      const paths = await addToStore(files);
      await Promise.all(files.map((f) => rm(f, { force: true })));
      return { ...(await instantiate(nonce, 'upload', { inputs: paths })), created: paths };
    },
  },
];

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = nixEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`))));
  });
}

async function addToStore(files: string[]): Promise<string[]> {
  return (await run('nix-store', ['--add', ...files])).trim().split('\n');
}

async function instantiate(nonce: string, which: string, args: { mib?: number; files?: number; inputs?: string[] }): Promise<Side> {
  const argv = [join(ROOT, 'bench/transfer.nix'), '--argstr', 'nonce', nonce, '--argstr', 'case', which];
  if (args.mib !== undefined) argv.push('--arg', 'mib', String(args.mib));
  if (args.files !== undefined) argv.push('--arg', 'files', String(args.files));
  if (args.inputs !== undefined) argv.push('--arg', 'inputs', `[ ${args.inputs.map((p) => JSON.stringify(p)).join(' ')} ]`);
  const drv = (await run('nix-instantiate', argv)).trim();
  return { drv, created: [], nonce };
}

/** Wall time and the largest single process's peak RSS in the command's process tree. */
async function measure(cwd: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Measured> {
  const start = performance.now();
  const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  const memory = watchPeakRss(child.pid!);
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c ?? 1));
  });
  const peak = memory.stop();
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`);
  return { wall: (performance.now() - start) / 1000, peakRssMB: peak / 1e6 };
}

function nixBuild(cluster: TestCluster, dir: string, drv: string, sshOpts?: string): Promise<Measured> {
  return measure(dir, 'nix-build', ['--max-jobs', '0', '--builders', `@${cluster.nixMachinesFile}`, '--no-out-link', drv], {
    ...nixEnv,
    NIX_SSHOPTS: sshOpts === undefined ? cluster.nixSshOpts : `${cluster.nixSshOpts} ${sshOpts}`,
  });
}

function offloadBuild(cluster: TestCluster, dir: string, drv: string, extra: string[] = []): Promise<Measured> {
  const args = [join(ROOT, 'bin/offload.js'), 'build', '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--no-out-link', ...extra, drv];
  return measure(dir, process.execPath, args, nixEnv);
}

/**
 * What this side created, in the local store and on every builder, and
 * nothing else: every path the bench makes carries the side's nonce in its
 * name (derivations, outputs, added inputs). Never a garbage collection.
 */
async function cleanUp(cluster: TestCluster, side: Side): Promise<void> {
  const closure = await run('nix-store', ['--query', '--requisites', '--include-outputs', side.drv]).catch(() => '');
  const ours = closure.split('\n').filter((p) => p.includes(side.nonce));
  const paths = [...new Set([...ours, ...side.created, side.drv])];
  await retried('the local store', () => run('nix-store', ['--delete', ...paths]).then(() => ({ code: 0, stderr: '' })));
  for (const builder of cluster.builders) {
    await retried(`${builder.name}'s store`, () => cluster.runOnBuilder(builder.name, ['nix-store', '--delete', ...paths]));
  }
}

/** A serve process of the run just ended may still hold temporary roots for a moment. */
async function retried(what: string, attempt: () => Promise<{ code: number; stderr: string }>): Promise<void> {
  let last = '';
  for (let i = 0; i < 20; i++) {
    const result = await attempt().catch((error: unknown) => ({ code: 1, stderr: error instanceof Error ? error.message : 'failed' }));
    if (result.code === 0) return;
    last = result.stderr;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`cleaning ${what} failed: ${last.slice(-500)}`);
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
}

export async function runTransferBench(only?: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'offload-bench-transfer-'));
  const native = hostSystem();
  const cluster = await startCluster({
    dir,
    builders: [
      { name: 'left', maxJobs: 2, systems: [native], features: ['left'] },
      { name: 'right', maxJobs: 2, systems: [native], features: ['right'] },
    ],
  });
  const widths = [28, 10, 9, 9, 7, 9, 9];
  try {
    console.log('\ntransfer: Nix build-remote vs offload, same two builders, fresh paths per side; peak RSS = largest single process');
    console.log(row(['case', 'bytes', 'nix', 'offload', 'ratio', 'nix RSS', 'off. RSS'], widths));
    for (const c of cases.filter((c) => !only || c.label.includes(only))) {
      const nonce = freshNonce();
      const nixSide = await c.prepare(`nix-${nonce}`, dir);
      const nix = await nixBuild(cluster, dir, nixSide.drv, c.nixSshOpts);
      await cleanUp(cluster, nixSide);
      const ourSide = await c.prepare(`offload-${nonce}`, dir);
      const ours = await offloadBuild(cluster, dir, ourSide.drv, c.offloadArgs);
      await cleanUp(cluster, ourSide);
      console.log(
        row(
          [
            c.label,
            formatBytes(c.bytes),
            `${nix.wall.toFixed(1)} s`,
            `${ours.wall.toFixed(1)} s`,
            `${(ours.wall / nix.wall).toFixed(2)}×`,
            `${nix.peakRssMB.toFixed(0)} MB`,
            `${ours.peakRssMB.toFixed(0)} MB`,
          ],
          widths,
        ) + (c.nixNote ? `  (${c.nixNote})` : ''),
      );
    }
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 * MiB) return `${bytes / (1024 * MiB)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(0)} KiB`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runTransferBench(process.argv[2]);
}
