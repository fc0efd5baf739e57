/**
 * `npm run bench transfer`: big and many-small transfers, side by side in
 * one run, Nix's `nix-build --max-jobs 0 --builders …` against
 * `offload build --max-jobs 0` on the same two test builders. Each case gets
 * fresh derivations (and fresh inputs) for each side; what a case created is
 * deleted from the local store and the builders' stores before the next one,
 * so the 4 GiB case does not stay on the disk. Peak RSS is the largest
 * single process of each side's process tree (each one's VmHWM, sampled).
 * Each case runs in rounds whose first side alternates, each side after a
 * `sync`, and the medians are compared: the side that went second used to
 * lose 10-20 % on the small cases to the first side's writeback. The cases
 * of many small files are cleaned up only after the last measurement, so
 * no side allocates inodes another side has just deleted (settle).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostSystem } from '../scripts/cluster/builderSpec.js';
import { startCluster, type TestCluster } from '../scripts/cluster/testCluster.js';
import { median } from '../src/history/median.js';
import { watchPeakRss } from '../scripts/peakRss.js';
import { freshNonce, nixEnv, ROOT } from './wideDag.js';

const MiB = 1024 * 1024;
/** Rounds per case (OFFLOAD_BENCH_ROUNDS, default 2): one with Nix first, one with offload first. */
const ROUNDS = Math.max(1, Number(process.env.OFFLOAD_BENCH_ROUNDS ?? 2) || 2);

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
  /** Each side creates hundreds or thousands of inodes, locally and on a builder: cleaned up after the last case (see settle). */
  manyInodes?: boolean;
  /** Needs both builders (left builds, right reads); every other case is given only left, as the issue measured (one builder). */
  bothBuilders?: boolean;
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
    bothBuilders: true,
  },
  {
    label: '20,000 files (copy back)',
    bytes: 20_000 * 200,
    prepare: (nonce) => instantiate(nonce, 'manyFiles', { files: 20_000 }),
    manyInodes: true,
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
    manyInodes: true,
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

/** Both tools' machines files: the cluster's, and ones naming only `left`. */
interface MachinesFiles {
  nix: string;
  offload: string;
}

/**
 * Machines files naming only `left`. A case that needs one builder is run
 * with one, as the issue's figures were: with two, offload logs in to both
 * and asks each what it already holds before it plans (Nix asks none and
 * logs in to the one it picks), which on 2 cores held the 300 paths' first
 * upload up by about 50 ms (measured with a one-builder machines file).
 * That is a cost of the start, not of moving bytes, and builder → builder
 * keeps both.
 */
async function leftOnly(cluster: TestCluster, dir: string): Promise<MachinesFiles> {
  const nix = join(dir, 'machines-left.nix');
  const offload = join(dir, 'machines-left.json');
  const nixLines = (await readFile(cluster.nixMachinesFile, 'utf8')).split('\n').filter((line) => line.startsWith('ssh://root@left '));
  const machines = (JSON.parse(await readFile(cluster.machinesFile, 'utf8')) as Array<{ hostName: string }>).filter((m) => m.hostName === 'left');
  if (nixLines.length !== 1 || machines.length !== 1) throw new Error(`the cluster's machines files name no single builder "left"`);
  await writeFile(nix, `${nixLines[0]}\n`);
  await writeFile(offload, JSON.stringify(machines, null, 2));
  return { nix, offload };
}

function nixBuild(cluster: TestCluster, dir: string, machinesFile: string, drv: string, sshOpts?: string): Promise<Measured> {
  return measure(dir, 'nix-build', ['--max-jobs', '0', '--builders', `@${machinesFile}`, '--no-out-link', drv], {
    ...nixEnv,
    NIX_SSHOPTS: sshOpts === undefined ? cluster.nixSshOpts : `${cluster.nixSshOpts} ${sshOpts}`,
  });
}

function offloadBuild(cluster: TestCluster, dir: string, machinesFile: string, drv: string, extra: string[] = []): Promise<Measured> {
  const args = [join(ROOT, 'bin/offload.js'), 'build', '--machines', machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--no-out-link', ...extra, drv];
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

/** Prepares one side's paths, measures its build from a settled machine, and deletes what it made (or leaves that for the end). */
async function side(cluster: TestCluster, dir: string, c: TransferCase, nonce: string, build: (drv: string) => Promise<Measured>, into: Measured[], later: Side[]): Promise<void> {
  const made = await c.prepare(nonce, dir);
  await settle();
  into.push(await build(made.drv));
  if (c.manyInodes) later.push(made);
  else await cleanUp(cluster, made);
}

/**
 * Each side starts with no dirty pages of its own preparation or of the
 * other side's run and clean-up: otherwise the kernel writes back the first
 * side's GiB or 20,000 files while the second side is measured.
 *
 * Deleting many files would also slow whatever creates files after it, and
 * by chance: ext4 without a journal (as on this machine) passes over every
 * free inode deleted in the last 60 s, or 360 s while its inode-table
 * block is dirty, each time it allocates one (recently_deleted() in
 * fs/ext4/ialloc.c, RECENTCY_MIN and RECENTCY_DIRTY; a search from the
 * start of the block group), and creating files dirties those blocks
 * again. A side after another side's clean-up of 40,000 files paid for it
 * in the build on the builder and in the import alike, whichever tool it
 * was: the same loop of 20,000 creations took 0.45 to 4.7 s of system
 * time, most of the slow ones in recently_deleted() and its buffer
 * lookups (perf). Waiting six minutes per side is too long, so the cases
 * of many small files (last in the list) keep what they made until the
 * end of the bench, and the big ones delete only a few inodes each.
 */
async function settle(): Promise<void> {
  await run('sync', []);
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
  const widths = [28, 10, 9, 9, 7, 16, 9, 9];
  // What the cases of many small files made, deleted after the last measurement (settle).
  const later: Side[] = [];
  try {
    const left = await leftOnly(cluster, dir);
    console.log('\ntransfer: Nix build-remote vs offload, same builder (both builders for builder → builder), fresh paths per side; peak RSS = largest single process');
    console.log(`${ROUNDS} rounds per case, the side going first alternating; walls are medians, then each round's ratio`);
    console.log(row(['case', 'bytes', 'nix', 'offload', 'ratio', 'rounds', 'nix RSS', 'off. RSS'], widths));
    for (const c of cases.filter((c) => !only || only.split('|').some((part) => c.label.includes(part)))) {
      const nix: Measured[] = [];
      const ours: Measured[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const nonce = freshNonce();
        const files = c.bothBuilders ? { nix: cluster.nixMachinesFile, offload: cluster.machinesFile } : left;
        const nixSide = () => side(cluster, dir, c, `nix-${nonce}`, (drv) => nixBuild(cluster, dir, files.nix, drv, c.nixSshOpts), nix, later);
        const ourSide = () => side(cluster, dir, c, `offload-${nonce}`, (drv) => offloadBuild(cluster, dir, files.offload, drv, c.offloadArgs), ours, later);
        // Whichever side goes second runs on a cluster the first one warmed and dirtied: the order alternates.
        if (round % 2 === 0) {
          await nixSide();
          await ourSide();
        } else {
          await ourSide();
          await nixSide();
        }
      }
      const nixWall = median(nix.map((m) => m.wall));
      const ourWall = median(ours.map((m) => m.wall));
      console.log(
        row(
          [
            c.label,
            formatBytes(c.bytes),
            `${nixWall.toFixed(1)} s`,
            `${ourWall.toFixed(1)} s`,
            `${(ourWall / nixWall).toFixed(2)}×`,
            ours.map((m, i) => `${(m.wall / nix[i]!.wall).toFixed(2)}`).join(' '),
            `${Math.max(...nix.map((m) => m.peakRssMB)).toFixed(0)} MB`,
            `${Math.max(...ours.map((m) => m.peakRssMB)).toFixed(0)} MB`,
          ],
          widths,
        ) + (c.nixNote ? `  (${c.nixNote})` : ''),
      );
    }
  } finally {
    for (const made of later) await cleanUp(cluster, made).catch((error: unknown) => console.error(error instanceof Error ? error.message : error));
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
