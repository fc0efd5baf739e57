import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { offload, parseJson, startOffload } from './buildSupport.js';
import { eventually, instantiateExpr, wideExpr, type MachineJson } from './faultSupport.js';

/** The machine's one-minute load average, as every test builder reads it: they share one kernel. */
function load1(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** A feature only ruby offers: jobs that need it wait for ruby. */
const RUBY_ONLY = 'ruby-only';

/** Limits a builder never reaches: only the builder under test may count as loaded. */
const NEVER = { cpuSomeAvg10: null, memoryFullAvg10: null, ioSomeAvg10: null, load1: null, storeFreePercent: null, buildDirFreePercent: null, storeFreeMiB: null, buildDirFreeMiB: null };
/** Only the free-space limits: the machine's CPU pressure (shared by every builder) must not count. */
const SPACE_ONLY = { cpuSomeAvg10: null, memoryFullAvg10: null, ioSomeAvg10: null, load1: null };

/**
 * Builders' own pressure, read over the connection offload already has. On
 * the test cluster every builder shares this machine's kernel, so PSI and
 * load are the same for all of them: a builder is made "loaded" by giving it
 * alone a load limit the test drives the machine over (a CPU hog started
 * outside offload), or by giving it a small, nearly full tmpfs as its store.
 */
describe.runIf(integrationPrereqs())(
  'builders under pressure get no new jobs',
  () => {
    let cluster: TestCluster & { dispose(): Promise<void> };
    const hogs: ChildProcess[] = [];

    beforeAll(async () => {
      cluster = await startTempCluster('pressure', [
        { name: 'aquamarine', maxJobs: 1 },
        // ruby reads this machine's own load: the CPU hog below drives it.
        { name: 'ruby', maxJobs: 2, features: [RUBY_ONLY], pressure: 'shared' },
        { name: 'kana', maxJobs: 2, storeSizeMiB: 64 },
      ]);
      // 61 of 64 MiB taken: 3 MiB free, under the 1 GiB floor.
      const filled = await cluster.runOnBuilder('kana', ['sh', '-c', 'head -c 63963136 /dev/zero > /nix/store/.filler && df -Pk /nix/store']);
      expect(filled.code, filled.stderr).toBe(0);
    });
    afterEach(() => {
      for (const hog of hogs.splice(0)) hog.kill('SIGKILL');
    });
    afterAll(async () => {
      for (const hog of hogs.splice(0)) hog.kill('SIGKILL');
      await cluster?.dispose();
    });

    function machinesWith(name: string, limits: (host: string) => MachineJson['pressure']): string[] {
      const machines = JSON.parse(readFileSync(cluster.machinesFile, 'utf8')) as MachineJson[];
      const file = join(cluster.dir, `${name}.machines.json`);
      writeFileSync(file, JSON.stringify(machines.map((m) => ({ ...m, pressure: limits(m.hostName) }))));
      return ['--machines', file, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'];
    }

    it('machines check shows each builder\'s pressure and warns about a nearly full store', async () => {
      const r = await offload(['machines', 'check', ...machinesWith('check', (h) => (h === 'kana' ? SPACE_ONLY : NEVER)), '--json']);
      const json = JSON.parse(r.stdout) as { machines: Array<{ hostName: string; verdict: string; store: { filesystem: string; mountPoint: string; usedPercent: number }; findings: Array<{ severity: string; message: string }>; pressure: { cpuSomeAvg10?: number; cpus?: number; storeFreePercent: number; buildDirFreePercent?: number; reasons: string[] } }> };
      expect(json.machines.map((m) => m.hostName)).toEqual(['aquamarine', 'ruby', 'kana']);
      const kana = json.machines.find((m) => m.hostName === 'kana')!;
      expect(kana.pressure.storeFreePercent).toBeLessThan(10);
      expect(kana.pressure.reasons).toEqual([expect.stringMatching(/^store \d+ MiB free < 1024 MiB$/)]);
      // Under 100 MiB free is also the older store-space finding: nothing fits there. It reads the
      // store's df row from the same look (its own tmpfs, mounted on /nix/store), not from a df of its own.
      expect(kana.verdict).toBe('unusable');
      expect(kana.store).toMatchObject({ filesystem: 'tmpfs', mountPoint: '/nix/store' });
      expect(kana.store.usedPercent).toBeGreaterThan(90);
      expect(kana.findings).toContainEqual({ severity: 'unusable', message: expect.stringMatching(/^only \d+(\.\d)? MiB free in the store \(\/nix\/store, \d+% used\): inputs and outputs cannot be stored there$/) });
      const ruby = json.machines.find((m) => m.hostName === 'ruby')!;
      expect(ruby.pressure.reasons).toEqual([]);
      expect(ruby.pressure.cpuSomeAvg10).toBeGreaterThanOrEqual(0);
      // Read by the shell itself (its affinity, one df for both filesystems): what nproc and two dfs said.
      expect(ruby.pressure.cpus).toBe(availableParallelism());
      expect(ruby.pressure.storeFreePercent).toBeGreaterThan(0);
      expect(ruby.pressure.buildDirFreePercent).toBeGreaterThan(0);
      const text = await offload(['machines', 'check', ...machinesWith('check', (h) => (h === 'kana' ? SPACE_ONLY : NEVER))]);
      expect(text.stdout).toMatch(/kana: warning: loaded \(store \d+ MiB free < 1024 MiB\): offload sends it no new job until it recovers/);
    });

    it('a builder whose store is nearly full gets no jobs', async () => {
      const [drv] = await instantiateExpr(wideExpr('full-store', 4, '0.5'));
      const r = await offload(['build', drv!, ...machinesWith('store', (h) => (h === 'kana' ? SPACE_ONLY : NEVER)), '--hosts', 'aquamarine,kana', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const json = parseJson(r);
      expect(json.jobs.map((j) => j.host)).not.toContain('kana');
      expect(r.stderr).toMatch(/kana: loaded \(store \d+ MiB free < 1024 MiB\); no new jobs until it recovers/);
    });

    it('a builder loaded by a CPU hog outside offload gets no jobs while the hog runs, and does again once it stops', async () => {
      // Every builder shares this machine's kernel, and other work (other test runs) may keep its
      // CPU pressure near 100 %, where a hog cannot make a difference. The load average is a count,
      // not a share: HOGS runnable processes raise it by about HOGS whatever else runs. So ruby's
      // limit is a load well above this machine's own and well below it with the hog running.
      const HOGS = 48;
      const limit = Math.ceil(Math.max(load1(), 1)) + HOGS / 3;
      for (let i = 0; i < HOGS; i++) hogs.push(spawn('nice', ['-n', '19', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }));
      expect(await eventually(() => load1() > limit + 2, 150_000, 500), `load ${load1()} stays under ${limit + 2} with the hog`).toBe(true);
      // Leaves only ruby can build (a feature only it has) and leaves for aquamarine: the run
      // cannot end until ruby takes jobs again, and aquamarine works meanwhile.
      const [drv] = await instantiateExpr(
        `mk { name = "hog-top"; sleep = "0"; deps = (builtins.genList (i: mk { name = "hog-\${toString i}"; sleep = "1"; }) 4) ++ (builtins.genList (i: mk { name = "hog-ruby-\${toString i}"; sleep = "1"; features = [ "${RUBY_ONLY}" ]; }) 3); }`,
      );
      const args = ['build', drv!, ...machinesWith('hog', (h) => (h === 'ruby' ? { ...NEVER, load1: limit } : NEVER)), '--hosts', 'aquamarine,ruby', '--json-events'];
      const cli = startOffload(args);
      let stdout = '';
      let stderr = '';
      cli.child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      cli.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const events = () =>
        stdout
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => JSON.parse(line) as { type: string; host?: string; name?: string; status?: string; reasons?: string[]; changed?: boolean });
      await cli.stderrContains('ruby: loaded (load');
      // aquamarine builds its leaves while ruby, loaded, is looked at again and again.
      const aquamarineDone = () => events().filter((e) => e.type === 'jobFinished' && e.host === 'aquamarine' && e.status === 'built').length >= 4;
      const rubyLooks = () => events().filter((e) => e.type === 'hostPressure' && e.host === 'ruby').length;
      expect(await eventually(() => aquamarineDone() && rubyLooks() >= 3, 150_000, 200), stderr).toBe(true);
      expect(events().filter((e) => e.type === 'jobStarted' && e.host === 'ruby')).toEqual([]);
      for (const hog of hogs.splice(0)) hog.kill('SIGKILL');
      const r = await cli.result;
      expect(r.code, r.stderr).toBe(0);
      const all = events();
      const recovered = all.findIndex((e) => e.type === 'hostPressure' && e.host === 'ruby' && e.changed === true && e.reasons?.length === 0);
      expect(recovered, r.stderr).toBeGreaterThan(0);
      expect(r.stderr).toContain('ruby: no longer loaded; takes jobs again');
      const onRuby = all.flatMap((e, i) => (e.type === 'jobStarted' && e.host === 'ruby' ? [i] : []));
      expect(onRuby.length).toBeGreaterThanOrEqual(3);
      expect(onRuby.every((i) => i > recovered)).toBe(true);
      expect(all.at(-1)?.type).toBe('result');
    }, 420_000);
  },
);
