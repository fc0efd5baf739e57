import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { offload, parseJson, startOffload } from './buildSupport.js';
import { eventually, instantiateExpr, sleep, wideExpr, type MachineJson } from './faultSupport.js';

/** System-wide CPU pressure (some, avg10), as every test builder reads it: they share one kernel. */
function cpuPressure(): number {
  return Number(/^some avg10=(\d+(?:\.\d+)?)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1] ?? NaN);
}

/** Limits a builder never reaches: only the builder under test may count as loaded. */
const NEVER = { cpuSomeAvg10: null, memoryFullAvg10: null, ioSomeAvg10: null, load1: null, storeFreePercent: null, buildDirFreePercent: null };
/** Only the free-space limits: the machine's CPU pressure (shared by every builder) must not count. */
const SPACE_ONLY = { cpuSomeAvg10: null, memoryFullAvg10: null, ioSomeAvg10: null, load1: null };

/**
 * Builders' own pressure, read over the connection offload already has. On
 * the test cluster every builder shares this machine's kernel, so PSI and
 * load are the same for all of them: a builder is made "loaded" by giving it
 * alone a limit the test drives the machine over (a CPU hog started outside
 * offload), or by giving it a small, nearly full tmpfs as its store.
 */
describe.runIf(integrationPrereqs() && (() => { try { return Number.isFinite(cpuPressure()); } catch { return false; } })())(
  'builders under pressure get no new jobs',
  () => {
    let cluster: TestCluster & { dispose(): Promise<void> };
    const hogs: ChildProcess[] = [];

    beforeAll(async () => {
      cluster = await startTempCluster('pressure', [
        { name: 'aquamarine', maxJobs: 1 },
        { name: 'ruby', maxJobs: 2 },
        { name: 'kana', maxJobs: 2, storeSizeMiB: 64 },
      ]);
      // 61 of 64 MiB taken: under 10 % of kana's store is free.
      const filled = await cluster.runOnBuilder('kana', ['sh', '-c', 'head -c 63963136 /dev/zero > /nix/store/.filler && df -Pk /nix/store']);
      expect(filled.code, filled.stderr).toBe(0);
    });
    afterEach(() => {
      for (const hog of hogs.splice(0)) hog.kill('SIGKILL');
    });
    afterAll(async () => {
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
      const json = JSON.parse(r.stdout) as { machines: Array<{ hostName: string; verdict: string; pressure: { cpuSomeAvg10?: number; storeFreePercent: number; reasons: string[] } }> };
      expect(json.machines.map((m) => m.hostName)).toEqual(['aquamarine', 'ruby', 'kana']);
      const kana = json.machines.find((m) => m.hostName === 'kana')!;
      expect(kana.pressure.storeFreePercent).toBeLessThan(10);
      expect(kana.pressure.reasons).toEqual([expect.stringMatching(/^store [\d.]+% free < 10%$/)]);
      // Under 100 MiB free is also the older store-space finding: nothing fits there.
      expect(kana.verdict).toBe('unusable');
      const ruby = json.machines.find((m) => m.hostName === 'ruby')!;
      expect(ruby.pressure.reasons).toEqual([]);
      expect(ruby.pressure.cpuSomeAvg10).toBeGreaterThanOrEqual(0);
      const text = await offload(['machines', 'check', ...machinesWith('check', (h) => (h === 'kana' ? SPACE_ONLY : NEVER))]);
      expect(text.stdout).toMatch(/kana: warning: loaded \(store [\d.]+% free < 10%\): offload sends it no new job until it recovers/);
    });

    it('a builder whose store is nearly full gets no jobs', async () => {
      const [drv] = await instantiateExpr(wideExpr('full-store', 4, '0.5'));
      const r = await offload(['build', drv!, ...machinesWith('store', (h) => (h === 'kana' ? SPACE_ONLY : NEVER)), '--hosts', 'aquamarine,kana', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const json = parseJson(r);
      expect(json.jobs.map((j) => j.host)).not.toContain('kana');
      expect(r.stderr).toMatch(/kana: loaded \(store [\d.]+% free < 10%\); no new jobs until it recovers/);
    });

    it('a builder loaded by a CPU hog outside offload gets no jobs while the hog runs, and does again once it stops', async () => {
      // The hog must make the difference: the machine's own pressure has to be well under the
      // limit first (a machine kept saturated by other work cannot show the gate at all).
      const limit = 70;
      const calm = await eventually(() => cpuPressure() < limit - 20, 120_000, 500);
      expect(calm, `this machine's CPU pressure stays at ${cpuPressure()}% without the hog`).toBe(true);
      for (let i = 0; i < 8; i++) hogs.push(spawn('nice', ['-n', '19', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }));
      expect(await eventually(() => cpuPressure() > limit + 5, 60_000, 200)).toBe(true);
      const [drv] = await instantiateExpr(wideExpr('hog', 16, '2'));
      const args = ['build', drv!, ...machinesWith('hog', (h) => (h === 'ruby' ? { ...SPACE_ONLY, cpuSomeAvg10: limit } : NEVER)), '--hosts', 'aquamarine,ruby', '--json-events'];
      const cli = startOffload(args);
      let stdout = '';
      cli.child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      const events = () =>
        stdout
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => JSON.parse(line) as { type: string; host?: string; reasons?: string[]; changed?: boolean });
      await cli.stderrContains('ruby: loaded (CPU pressure');
      // aquamarine works through its jobs one by one while ruby, loaded, is looked at again and again.
      await sleep(8_000);
      expect(events().filter((e) => e.type === 'jobStarted' && e.host === 'ruby')).toEqual([]);
      expect(events().filter((e) => e.type === 'hostPressure' && e.host === 'ruby').length).toBeGreaterThan(1);
      for (const hog of hogs.splice(0)) hog.kill('SIGKILL');
      const r = await cli.result;
      expect(r.code, r.stderr).toBe(0);
      const all = events();
      const recovered = all.findIndex((e) => e.type === 'hostPressure' && e.host === 'ruby' && e.changed === true && e.reasons?.length === 0);
      expect(recovered, r.stderr).toBeGreaterThan(0);
      expect(r.stderr).toContain('ruby: no longer loaded; takes jobs again');
      const onRuby = all.flatMap((e, i) => (e.type === 'jobStarted' && e.host === 'ruby' ? [i] : []));
      expect(onRuby.length).toBeGreaterThan(0);
      expect(onRuby.every((i) => i > recovered)).toBe(true);
      expect(all.at(-1)?.type).toBe('result');
    });
  },
);
