import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_NIX_CONF_DIR } from '../../scripts/cluster/localNix.js';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate, NIX_ENV, offload, parseJson, ROOT } from './buildSupport.js';

/**
 * offload with no configuration of its own (no --machines, --builders,
 * $OFFLOAD_MACHINES or machines.json) builds with what the user's Nix
 * settings say: `builders` and `max-jobs` from nix.conf or NIX_CONFIG, and
 * the local machine's system-features.
 */
describe.runIf(integrationPrereqs())("offload build with the user's Nix settings", () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let dir: string;

  beforeAll(async () => {
    cluster = await startTempCluster('nixconf');
    dir = mkdtempSync(join(tmpdir(), 'offload-nixconf-user-'));
    mkdirSync(join(dir, 'config'));
  });
  afterAll(async () => {
    await cluster?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A conf dir whose nix.conf includes the tests' own settings, then adds `lines`. */
  function confDir(name: string, lines: string[]): string {
    const path = join(dir, name);
    mkdirSync(path);
    writeFileSync(join(path, 'nix.conf'), [`include ${LOCAL_NIX_CONF_DIR}/nix.conf`, ...lines, ''].join('\n'));
    return path;
  }

  /** No offload configuration anywhere: an empty XDG config home, no $OFFLOAD_MACHINES. */
  const env = (variables: Record<string, string>): NodeJS.ProcessEnv => {
    const { OFFLOAD_MACHINES: _, ...base } = NIX_ENV;
    return { ...base, XDG_CONFIG_HOME: join(dir, 'config'), ...variables };
  };
  const ssh = () => ['--ssh-config', cluster.sshConfigFile];

  it('builders = @machines and max-jobs = 0 in nix.conf: every job goes to the builders', async () => {
    const conf = confDir('conf-file', [`builders = @${cluster.nixMachinesFile}`, 'max-jobs = 0']);
    const machines = await offload(['machines', ...ssh(), '--json'], env({ NIX_CONF_DIR: conf }));
    expect(machines.code, machines.stderr).toBe(0);
    const listed = JSON.parse(machines.stdout) as { machines: Array<{ hostName: string; origin: string }>; local: { maxJobs: number; origins: { maxJobs: string } } };
    expect(listed.machines.map((m) => m.hostName)).toEqual(cluster.builders.map((b) => b.name));
    expect(listed.machines[0]!.origin).toMatch(new RegExp(`^${cluster.nixMachinesFile}:\\d+$`));
    expect(listed.local).toMatchObject({ maxJobs: 0, origins: { maxJobs: `${conf}/nix.conf:3` } });

    const [drv] = await instantiate('diamond');
    const r = await offload(['build', drv!, ...ssh(), '--json'], env({ NIX_CONF_DIR: conf }));
    expect(r.code, r.stderr).toBe(0);
    const json = parseJson(r);
    expect(json.jobs.map((j) => j.host).filter((h) => h === 'local')).toEqual([]);
    expect(new Set(json.jobs.map((j) => j.status))).toEqual(new Set(['built']));
  });

  it('builders and max-jobs from NIX_CONFIG win over nix.conf', async () => {
    const conf = confDir('conf-env', ['builders =', 'max-jobs = 4']);
    const ruby = cluster.builders.find((b) => b.name === 'ruby')!;
    const inline = `ssh://root@ruby ${ruby.systems.join(',')} ${cluster.clientKey} 2`;
    const [drv] = await instantiate('diamond');
    const r = await offload(['build', drv!, ...ssh(), '--json'], env({ NIX_CONF_DIR: conf, NIX_CONFIG: `builders = ${inline}\nmax-jobs = 0` }));
    expect(r.code, r.stderr).toBe(0);
    expect(new Set(parseJson(r).jobs.map((j) => j.host))).toEqual(new Set(['ruby']));
  });

  it("the local machine builds what Nix would let it: system-features defaults (big-parallel) and max-jobs = auto", async () => {
    const conf = confDir('conf-local', ['max-jobs = auto']);
    const nonce = randomBytes(6).toString('hex');
    const expr = `(import ${ROOT}/fixtures/nix/lib.nix { nonce = "${nonce}"; }).mk { name = "wants-big-parallel"; features = [ "big-parallel" ]; }`;
    const { stdout } = await promisify(execFile)('nix-instantiate', ['-E', expr], { env: NIX_ENV });
    const r = await offload(['build', stdout.trim(), '--json'], env({ NIX_CONF_DIR: conf }));
    expect(r.code, r.stderr).toBe(0);
    expect(parseJson(r).jobs.map((j) => [j.name, j.host, j.status])).toEqual([['wants-big-parallel', 'local', 'built']]);
  });
});
