import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, offload } from './buildSupport.js';
import { editedMachines, instantiateExpr } from './faultSupport.js';

const runLocal = async (command: string[]) => (await promisify(execFile)(command[0]!, command.slice(1), { env: NIX_ENV })).stdout.trim();

/**
 * A store that refuses a path for a reason trying again cannot change: the
 * builder's store is a 16 MiB tmpfs, the build's input a 24 MiB file. The
 * builder's nix-store --serve says "No space left on device" as it writes
 * the path, and dies.
 */
describe.runIf(integrationPrereqs())('a full store', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let dir: string;
  let input: string;

  beforeAll(async () => {
    cluster = await startTempCluster('storefull', [{ name: 'tiny', maxJobs: 1, storeSizeMiB: 16 }]);
    dir = mkdtempSync(join(tmpdir(), 'offload-storefull-'));
    input = join(dir, 'big.bin');
    // The same bytes every run: one store path on this shared machine, not one per run.
    writeFileSync(input, Buffer.alloc(24 * 1024 * 1024, 'offload: a store too small for this input\n'));
  });
  afterAll(async () => {
    await cluster?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('an input the builder has no room for fails its job at once: sent once, not retried, not rebuilt', async () => {
    const [drv] = await instantiateExpr(
      `mk { name = "too-big"; extra = { big = builtins.path { path = ${input}; name = "offload-store-full-input"; }; }; script = "/bin/cat $big > /dev/null"; }`,
    );
    // No pressure limits: the empty tmpfs is all free, and the machine's load must not hold the job back.
    const noLimits = { cpuSomeAvg10: null, memoryFullAvg10: null, ioSomeAvg10: null, load1: null, storeFreePercent: null, buildDirFreePercent: null, storeFreeMiB: null, buildDirFreeMiB: null };
    const machines = editedMachines(cluster, 'nopressure', (ms) => ms.map((m) => ({ ...m, pressure: noLimits })));
    const r = await offload(['build', drv!, '--machines', machines, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--no-out-link']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('tiny: too-big failed: the store on tiny refused it for good (not retried): writing to file: No space left on device');
    expect(r.stderr.match(/tiny: started too-big/g)).toHaveLength(1);
    expect(r.stderr.match(/local -> tiny: copy failed/g)).toHaveLength(1);
    expect(r.stderr).toContain('1 failed');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // Nix registers a path only once all of it is written: nothing half-added is valid there.
    const inputPath = (await runLocal(['nix-store', '--query', '--references', drv!])).split('\n').find((p) => p.endsWith('-offload-store-full-input'))!;
    expect(inputPath).toBeDefined();
    expect((await cluster.runOnBuilder('tiny', ['nix-store', '--check-validity', inputPath])).code).not.toBe(0);
  });
});
