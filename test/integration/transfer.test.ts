import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostSystem, startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { watchPeakRss } from '../../scripts/peakRss.js';
import { instantiate, NIX_ENV, offload, ROOT, startOffload } from './buildSupport.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

async function validLocally(paths: string[]): Promise<string[]> {
  const { stdout } = await run('nix-store', ['--check-validity', '--print-invalid', ...paths], { env: NIX_ENV });
  const invalid = new Set(stdout.trim().split('\n'));
  return paths.filter((p) => !invalid.has(p));
}

/**
 * Big and untrusted transfers on the test cluster: memory stays flat for a
 * 1 GiB copy back, and a builder that lies about what it sends gets nothing
 * into the local store. The benchmark (`npm run bench transfer`) carries
 * the tight figures; this only catches a regression that buffers a NAR.
 */
describe.runIf(integrationPrereqs())('transfers on the test cluster', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let machines: string[];

  beforeAll(async () => {
    cluster = await startTempCluster('transfer', [
      { name: 'honest', maxJobs: 2, systems: [hostSystem()], features: ['honest'] },
      { name: 'other', maxJobs: 2, systems: [hostSystem()], features: ['other'], mandatoryFeatures: ['other'] },
      { name: 'liar', maxJobs: 2, systems: [hostSystem()], features: ['liar'], mandatoryFeatures: ['liar'] },
    ]);
    machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'];
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  it('copies 1 GiB back with a peak RSS far below the size, its progress in --json-events', async () => {
    const [drv] = await instantiate('big', 'transfer.nix');
    const cli = startOffload(['build', drv!, ...machines, '--hosts', 'honest', '--json-events']);
    const memory = watchPeakRss(cli.child.pid!);
    const r = await cli.result;
    const peak = memory.stop();
    expect(r.code, r.stderr).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown> & { type: string });
    const out = (events.at(-1) as unknown as { outputs: Record<string, { out: string }> }).outputs[drv!]!.out;
    try {
      expect(await validLocally([out])).toEqual([out]);
      // Buffering the NAR would need more than 1 GiB; streaming needs ~100 MB.
      expect(peak).toBeLessThan(400 * MiB);
      const started = events.find((e) => e.type === 'transferStarted' && e.from === 'honest' && e.to === 'local')!;
      expect(started).toMatchObject({ paths: 1 });
      expect(started.bytes).toBeGreaterThan(1024 * MiB);
      const ticks = events.filter((e) => e.type === 'transferProgress' && e.transferId === started.transferId).map((e) => e.bytes as number);
      expect(ticks.length).toBeGreaterThan(1);
      expect(ticks).toEqual([...ticks].sort((a, b) => a - b));
      expect(events.find((e) => e.type === 'transferFinished' && e.transferId === started.transferId)).toMatchObject({ bytes: started.bytes, from: 'honest', to: 'local' });
    } finally {
      await run('nix-store', ['--delete', out], { env: NIX_ENV });
    }
  });

  // Half a GiB is enough: a regression that held the NAR would pass 400 MB.
  it('uploads a 512 MiB input that only the local store has, with a peak RSS far below the size', async () => {
    const nonce = randomBytes(6).toString('hex');
    const file = join(tmpdir(), `offload-upload-${nonce}`);
    await run('/bin/dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=512', 'status=none']);
    const input = (await run('nix-store', ['--add', file], { env: NIX_ENV })).stdout.trim();
    await rm(file, { force: true });
    try {
      const { stdout } = await run('nix-instantiate', [join(ROOT, 'fixtures', 'nix', 'transfer.nix'), '-A', 'upload', '--argstr', 'nonce', nonce, '--arg', 'input', input], { env: NIX_ENV });
      const drv = stdout.trim();
      const cli = startOffload(['build', drv, ...machines, '--hosts', 'honest', '--no-out-link']);
      const memory = watchPeakRss(cli.child.pid!);
      const r = await cli.result;
      const peak = memory.stop();
      expect(r.code, r.stderr).toBe(0);
      expect((await readFile(r.stdout.trim(), 'utf8')).trim()).toBe(String(512 * MiB));
      expect(peak).toBeLessThan(400 * MiB);
    } finally {
      await run('nix-store', ['--delete', input], { env: NIX_ENV }).catch(() => undefined);
    }
  });

  it('refuses to upload a local path whose files changed behind Nix\'s back, as the local store\'s fault, not the builder\'s', async () => {
    const nonce = randomBytes(6).toString('hex');
    const file = join(tmpdir(), `offload-changed-${nonce}`);
    await writeFile(file, `recorded ${nonce}\n`);
    const input = (await run('nix-store', ['--add', file], { env: NIX_ENV })).stdout.trim();
    await rm(file, { force: true });
    try {
      // Same size, other bytes: only the hash the builder's store checks can tell.
      await chmod(input, 0o644);
      await writeFile(input, `modified ${nonce}\n`);
      const { stdout } = await run('nix-instantiate', [join(ROOT, 'fixtures', 'nix', 'transfer.nix'), '-A', 'upload', '--argstr', 'nonce', nonce, '--arg', 'input', input], { env: NIX_ENV });
      const r = await offload(['build', stdout.trim(), ...machines, '--hosts', 'honest', '--no-out-link']);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/The local store's \/nix\/store\/[a-z0-9]{32}-offload-changed-\w+ does not match what the store recorded for it: honest refused the NAR written from its files, whose hash differs .*nix-store --verify --check-contents/);
      expect(r.stderr).not.toMatch(/cannot be trusted|honest is down/);
    } finally {
      await run('nix-store', ['--delete', input], { env: NIX_ENV }).catch(() => undefined);
    }
  });

  it('streams a 512 MiB output from the builder that made it into the one that needs it, with a peak RSS far below the size', async () => {
    const nonce = randomBytes(6).toString('hex');
    const { stdout } = await run('nix-instantiate', [join(ROOT, 'fixtures', 'nix', 'transfer.nix'), '-A', 'builderToBuilder', '--argstr', 'nonce', nonce, '--arg', 'mib', '512'], { env: NIX_ENV });
    const cli = startOffload(['build', stdout.trim(), ...machines, '--hosts', 'honest,other', '--no-out-link', '--json-events']);
    const memory = watchPeakRss(cli.child.pid!);
    const r = await cli.result;
    const peak = memory.stop();
    expect(r.code, r.stderr).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown> & { type: string });
    const direct = events.find((e) => e.type === 'transferStarted' && e.from === 'honest' && e.to === 'other');
    expect(direct?.bytes).toBeGreaterThan(512 * MiB);
    // Only the small final output came here; the big one went builder to builder.
    expect(events.some((e) => e.type === 'transferStarted' && e.from === 'honest' && e.to === 'local')).toBe(false);
    expect(peak).toBeLessThan(400 * MiB);
  });

  for (const [lie, what] of [
    ['add', /liar cannot be trusted: its closure reply names a path this run never asked for \(\/nix\/store\/[a-z0-9]{32}-glibc-2\.39\)/],
    ['rename', /liar cannot be trusted: its closure reply leaves out a path it was asked about \(\/nix\/store\/[a-z0-9]{32}-from-liar\)/],
    ['corrupt', /liar cannot be trusted: its NAR does not have the hash sha256:[a-z0-9]+ its path info gives \(\/nix\/store\/[a-z0-9]{32}-from-liar\)/],
  ] as const) {
    it(`keeps a builder's lie out of the local store (${lie}) and takes the builder out`, async () => {
      await installLyingServe(cluster, 'liar', lie);
      const [drv] = await instantiate('fromLiar', 'transfer.nix');
      const r = await offload(['build', drv!, ...machines, '--json']);
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(what);
      expect(r.stderr).toMatch(/liar is down .*not retried in this run/);
      const { stdout } = await run('nix-store', ['--query', '--outputs', drv!], { env: NIX_ENV });
      const out = stdout.trim();
      const injected = `/nix/store/${out.slice(11, 43).split('').reverse().join('')}-glibc-2.39`;
      expect(await validLocally([out, injected])).toEqual([]);
      expect(existsSync(injected)).toBe(false);
    });
  }
});

/** Puts the lying `nix-store` (test/support/lyingServe.ts) first on the builder's PATH for its next ssh sessions. */
async function installLyingServe(cluster: TestCluster, name: string, lie: string): Promise<void> {
  const root = cluster.builder(name).root;
  const bin = join(root, 'lying-bin');
  await mkdir(bin, { recursive: true });
  const loader = join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
  const script = join(ROOT, 'test', 'support', 'lyingServe.ts');
  await writeFile(join(bin, 'nix-store'), `#!/bin/sh\nOFFLOAD_LIE=${lie} exec /usr/bin/node --import file://${loader} ${script} "$@"\n`, { mode: 0o755 });
  // sshd runs commands through bash, which reads ~/.bashrc for them (HOME is the builder's home).
  await writeFile(join(root, 'home', '.bashrc'), `export PATH=${bin}:$PATH\n`);
  await rm(join(root, 'home', '.bash_profile'), { force: true });
}
