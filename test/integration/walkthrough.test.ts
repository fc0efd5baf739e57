import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_NIX_CONF_DIR } from '../../scripts/cluster/localNix.js';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, ROOT, type CliResult } from './buildSupport.js';

const exec = promisify(execFile);

/**
 * The README's "Use the builders you already have", command for command: the
 * builders are in /etc/nix/machines and ~/.ssh/config, offload has no
 * configuration of its own. /etc/nix is a private bind mount (unshare -m), so
 * the machine's own /etc/nix is never touched.
 */
describe.runIf(integrationPrereqs())('README walkthrough: the builders you already have', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  const dir = mkdtempSync(join(tmpdir(), 'offload-walkthrough-'));
  const etcNix = join(dir, 'etc-nix');
  const home = join(dir, 'home');
  const project = join(dir, 'project');
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    cluster = await startTempCluster('walkthrough');
    mkdirSync(etcNix);
    // The tests' own nix.conf (no substituters, no sandbox) as the machine's, plus the builders.
    copyFileSync(join(LOCAL_NIX_CONF_DIR, 'nix.conf'), join(etcNix, 'nix.conf'));
    copyFileSync(cluster.nixMachinesFile, join(etcNix, 'machines'));
    mkdirSync(join(home, '.ssh'), { recursive: true });
    copyFileSync(cluster.sshConfigFile, join(home, '.ssh', 'config'));
    cpSync(join(ROOT, 'fixtures', 'installables', 'flake'), project, { recursive: true });
    writeFileSync(join(project, 'nonce'), randomBytes(6).toString('hex'));
    const { NIX_CONF_DIR: _ignored, OFFLOAD_MACHINES: _none, ...rest } = NIX_ENV;
    env = { ...rest, HOME: home, XDG_CONFIG_HOME: join(home, '.config') };
  });
  afterAll(async () => {
    await cluster?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  /** `offload ARGS` in the project folder, with `etcNix` mounted on /etc/nix for this process only. */
  async function offload(args: string[]): Promise<CliResult> {
    const script = 'mount --bind "$1" /etc/nix && cd "$2" && shift 2 && exec "$@"';
    try {
      const { stdout, stderr } = await exec('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', etcNix, project, process.execPath, join(ROOT, 'bin', 'offload.js'), ...args], { env });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  it('offload machines check: every builder from /etc/nix/machines, reached through ~/.ssh/config', async () => {
    const r = await offload(['machines', 'check']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    // Reached through ~/.ssh/config, host key checked against the pinned key.
    for (const b of cluster.builders) expect(r.stdout).toMatch(new RegExp(`^${b.name}\\s+ok\\s+\\d+ ms\\s+pinned\\b`, 'm'));
    expect(r.stdout).toContain('3 of 3 machines usable');
    expect(r.stdout).toMatch(/from .*\/etc\/nix\/machines/);
  });

  it('offload plan .#pkg, then offload build .#pkg: Nix evaluates, the builders build, the output is local', async () => {
    const plan = await offload(['plan', '.#hello', '--json']);
    expect(plan.code, plan.stderr).toBe(0);
    const planned = JSON.parse(plan.stdout) as { jobs: Array<{ name: string; host: string }>; machinesSource: string };
    expect(planned.jobs.map((j) => j.name)).toEqual(['flake-hello']);
    expect(planned.machinesSource).toMatch(/\/etc\/nix\/machines/);

    const build = await offload(['build', '.#hello']);
    expect(build.code, build.stderr).toBe(0);
    const out = build.stdout.trim();
    expect(readFileSync(out, 'utf8')).toMatch(/^flake-hello /);
    await exec('nix-store', ['--check-validity', out], { env: NIX_ENV });
    expect(readlinkSync(join(project, 'result'))).toBe(out);
  });
});
