import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadMachinesConfig } from '../../src/config/loadMachines.js';
import type { Machine } from '../../src/config/machine.js';
import type { CompressionSwitch } from '../../src/remote/adaptiveCompression.js';
import { SshPool } from '../../src/remote/sshPool.js';
import { hostSystem, startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, offload, ROOT } from './buildSupport.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/**
 * A link compressed on request (--compress, Compression yes) stops
 * compressing a direction whose data does not compress, by a rekey with the
 * builder's real sshd, and compresses it again later; compressible data
 * stays compressed. Whatever the switches, every byte arrives intact.
 */
describe.runIf(integrationPrereqs())('adaptive compression on the test cluster', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  const pools: SshPool[] = [];
  /** The builder as offload's own config loader reads it from the cluster's machines file and ssh_config. */
  let garnet: Machine;

  beforeAll(async () => {
    cluster = await startTempCluster('adaptcomp', [{ name: 'garnet', maxJobs: 2, systems: [hostSystem()] }]);
    writeFileSync(join(cluster.dir, 'empty_known_hosts'), '');
    garnet = (await loadMachinesConfig({ machinesFile: cluster.machinesFile, sshConfigFile: cluster.sshConfigFile, env: {} })).machines[0]!;
  });
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((pool) => pool.closeAll()));
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  it('stops compressing downloads of random bytes, only that direction, and compresses again for data that compresses', async () => {
    // Small limits, and data paced at ~20 MiB/s, so each switch falls inside its part of the stream.
    const debug: string[] = [];
    const pool = new SshPool({ knownHostsFiles: [join(cluster.dir, 'empty_known_hosts')], compress: true, compressionLimits: { windowBytes: 2 * MiB, minSaving: 0.03, probeAfterBytes: 8 * MiB, probeAfterMs: 60_000, maxBackoff: 8 }, debug: (m) => debug.push(m) });
    pools.push(pool);
    const switches: CompressionSwitch[] = [];
    pool.on('compression', (host, change) => switches.push(change));
    const m = garnet;
    await pool.connect(m);
    expect(pool.negotiated('garnet')).toMatchObject({ cs: { compress: 'zlib@openssh.com' }, sc: { compress: 'zlib@openssh.com' } });
    const paced = (source: string, mib: number) => `for i in $(seq ${mib}); do head -c 1M ${source}; sleep 0.05; done`;
    const result = await pool.exec(m, `${paced('/dev/urandom', 8)}; ${paced('/dev/zero', 40)}`, { maxReplyBytes: 64 * MiB, timeoutMs: 60_000 });
    expect(result.code).toBe(0);
    expect(switches.length).toBeGreaterThanOrEqual(2);
    expect(switches[0]).toMatchObject({ direction: 'download', compressing: false });
    expect(switches[0]!.plainBytes).toBeGreaterThanOrEqual(2 * MiB);
    expect(switches[0]!.saving).toBeLessThan(0.03);
    expect(switches.at(-1)).toMatchObject({ direction: 'download', compressing: true });
    expect(switches.at(-1)!.plainBytes).toBeGreaterThanOrEqual(8 * MiB);
    // Uploads were never judged worthless: only the download direction switched.
    expect(switches.every((s) => s.direction === 'download')).toBe(true);
    expect(pool.negotiated('garnet')).toMatchObject({ cs: { compress: 'zlib@openssh.com' }, sc: { compress: 'zlib@openssh.com' } });
    // The rekeyed link still carries exact bytes both ways.
    expect((await pool.exec(m, 'head -c 3000000 /dev/zero | wc -c')).stdout.trim()).toBe('3000000');
    // Told once, to the listener (a run's event and its log line); the debug log does not repeat it.
    expect(debug.filter((line) => /compressing/.test(line))).toEqual([]);
  });

  it('backs off between looks that find nothing to compress: each waits twice as long as the one before', async () => {
    // Nobody listens to this pool's 'compression' events: its debug log is where each switch is told.
    const debug: string[] = [];
    const pool = new SshPool({ knownHostsFiles: [join(cluster.dir, 'empty_known_hosts')], compress: true, compressionLimits: { windowBytes: 2 * MiB, minSaving: 0.03, probeAfterBytes: 4 * MiB, probeAfterMs: 60_000, maxBackoff: 4 }, debug: (m) => debug.push(m) });
    pools.push(pool);
    await pool.connect(garnet);
    // Stops after 2 MiB; looks after 4 MiB, 8 MiB, then 16 MiB uncompressed (maxBackoff 4), each failing within its window.
    const result = await pool.exec(garnet, 'for i in $(seq 40); do head -c 1M /dev/urandom; sleep 0.05; done', { maxReplyBytes: 64 * MiB, timeoutMs: 60_000 });
    expect(result.code).toBe(0);
    const switches = debug.filter((line) => /compressing/.test(line));
    expect(switches[0]).toMatch(/^garnet: stopped compressing downloads: zlib saved \d+\.\d % of \d+\.\d MiB, not worth its CPU$/);
    const looks = switches.flatMap((line) => /^garnet: compressing downloads again after (\d+\.\d) MiB uncompressed/.exec(line)?.[1] ?? []).map(Number);
    expect(looks.length, switches.join('\n')).toBeGreaterThanOrEqual(2);
    expect(looks[0]).toBeGreaterThanOrEqual(4);
    // Without the back-off every look would come 4 MiB after the last stop.
    expect(looks[1]).toBeGreaterThanOrEqual(8);
    if (looks[2] !== undefined) expect(looks[2]).toBeGreaterThanOrEqual(16);
  });

  async function buildOutput(attr: string, args: string[], options: string[] = []): Promise<{ out: string; events: Array<Record<string, unknown> & { type: string }> }> {
    const nonce = randomBytes(6).toString('hex');
    const { stdout } = await run('nix-instantiate', [join(ROOT, 'fixtures', 'nix', 'transfer.nix'), '-A', attr, '--argstr', 'nonce', nonce, ...args], { env: NIX_ENV });
    const drv = stdout.trim();
    const r = await offload(['build', drv, '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--compress', '--json-events', '--no-out-link', ...options]);
    expect(r.code, r.stderr).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown> & { type: string });
    const out = (events.at(-1) as unknown as { outputs: Record<string, { out: string }> }).outputs[drv]!.out;
    return { out, events };
  }

  it('copies back 48 MiB of random bytes with --compress: downloads stop compressing, and the NAR arrives intact', async () => {
    const logFile = join(cluster.dir, `copy-back-${randomBytes(6).toString('hex')}.log`);
    const { out, events } = await buildOutput('bigRandom', ['--arg', 'mib', '48'], ['--log-file', logFile]);
    try {
      const switched = events.filter((e) => e.type === 'linkCompression');
      expect(switched[0]).toMatchObject({ host: 'garnet', direction: 'download', compressing: false });
      expect(switched[0]!.saving as number).toBeLessThan(0.03);
      // The log (every level, in the log file) tells each switch once: the event's entry, no debug entry besides.
      const told = (await readFile(logFile, 'utf8')).split('\n').filter((line) => line.includes('stopped compressing downloads'));
      expect(told).toHaveLength(switched.filter((e) => e.compressing === false).length);
      expect(told.every((line) => (JSON.parse(line) as { kind?: string }).kind === 'event')).toBe(true);
      // In the local store, as the builder made it: nix-store checks the content against the recorded hash.
      await run('nix-store', ['--verify-path', out], { env: NIX_ENV });
      const local = (await run('nix-store', ['--query', '--hash', out], { env: NIX_ENV })).stdout.trim();
      const remote = new SshPool({ knownHostsFiles: [join(cluster.dir, 'empty_known_hosts')] });
      pools.push(remote);
      const there = await remote.exec(garnet, `nix-store --query --hash ${out}`);
      expect(there.stdout.trim()).toBe(local);
    } finally {
      await run('nix-store', ['--delete', out], { env: NIX_ENV }).catch(() => undefined);
    }
  });

  it('uploads a 48 MiB input of random bytes with --compress: uploads stop compressing, and the builder reads every byte', async () => {
    const file = join(cluster.dir, `random-input-${randomBytes(6).toString('hex')}`);
    await run('/bin/dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=48', 'status=none']);
    const input = (await run('nix-store', ['--add', file], { env: NIX_ENV })).stdout.trim();
    const made: string[] = [input];
    try {
      const { out, events } = await buildOutput('upload', ['--arg', 'input', input]);
      made.unshift(out);
      const switched = events.filter((e) => e.type === 'linkCompression');
      expect(switched[0]).toMatchObject({ host: 'garnet', direction: 'upload', compressing: false });
      expect(switched.every((e) => e.direction === 'upload')).toBe(true);
      expect((await readFile(out, 'utf8')).trim()).toBe(String(48 * MiB));
    } finally {
      await run('nix-store', ['--delete', ...made], { env: NIX_ENV }).catch(() => undefined);
    }
  });

  it('keeps compressing a copy back of 48 MiB that compresses', async () => {
    const { out, events } = await buildOutput('big', ['--arg', 'mib', '48']);
    try {
      expect(events.filter((e) => e.type === 'linkCompression')).toEqual([]);
      expect(events.some((e) => e.type === 'transferFinished' && e.from === 'garnet' && e.to === 'local' && (e.bytes as number) > 48 * MiB)).toBe(true);
    } finally {
      await run('nix-store', ['--delete', out], { env: NIX_ENV }).catch(() => undefined);
    }
  });
});
