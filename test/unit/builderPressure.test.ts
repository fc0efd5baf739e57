import { describe, expect, it, vi } from 'vitest';
import { DEFAULT_PRESSURE_LIMITS, formatPressure, parsePressure, parsePressureLook, pressureLimits, pressureReasons } from '../../src/remote/builderPressure.js';
import { PressureGate } from '../../src/run/pressureGate.js';

const psiOutput = [
  '@cpu',
  'some avg10=81.50 avg60=40.00 avg300=10.00 total=123',
  'full avg10=0.00 avg60=0.00 avg300=0.00 total=0',
  '@memory',
  'some avg10=3.00 avg60=1.00 avg300=0.00 total=5',
  'full avg10=1.25 avg60=0.00 avg300=0.00 total=5',
  '@io',
  'some avg10=12.00 avg60=0.00 avg300=0.00 total=9',
  'full avg10=2.00 avg60=0.00 avg300=0.00 total=9',
  '@loadavg',
  '9.50 4.00 2.00 3/345 6789',
  '@cpus',
  '\t0-1,4-5',
  '@df',
  'Filesystem     1024-blocks    Used Available Capacity Mounted on',
  'tmpfs                65536   61440      4096      94% /nix/store',
  '/dev/sda1         10000000 1000000   9000000      10% /tmp',
].join('\n');

describe('builder pressure', () => {
  it('parses PSI avg10, load, CPUs and the free share of the store and build dir filesystems', () => {
    expect(parsePressure(psiOutput)).toEqual({
      cpuSomeAvg10: 81.5,
      memoryFullAvg10: 1.25,
      ioSomeAvg10: 12,
      load1: 9.5,
      cpus: 4,
      storeFreePercent: 6.3,
      storeFreeKiB: 4096,
      buildDirFreePercent: 90,
      buildDirFreeKiB: 9000000,
    });
  });

  it('uses Hydra\'s queue runner limits by default, the load average only where PSI is missing, and a 1 GiB floor of free space', () => {
    const p = parsePressure(psiOutput);
    expect(pressureReasons(p, DEFAULT_PRESSURE_LIMITS)).toEqual(['CPU pressure 81.5% > 75%', 'store 4 MiB free < 1024 MiB']);
    const noPsi = parsePressure(psiOutput.replace(/@cpu[\s\S]*?@loadavg/, '@cpu\n@memory\n@io\n@loadavg'));
    expect(noPsi.cpuSomeAvg10).toBeUndefined();
    expect(pressureReasons(noPsi, DEFAULT_PRESSURE_LIMITS)).toEqual(['load 9.5 > 4', 'store 4 MiB free < 1024 MiB']);
  });

  it('holds no builder back for a small share of a big disk free: the free-space default is a size, not a share', () => {
    // 9 % of a 252 GiB disk (df's Available leaves root's reserved blocks out): tens of GiB to build in.
    const bigDisk = { storeFreePercent: 9, storeFreeKiB: 23 * 1024 * 1024, buildDirFreePercent: 9, buildDirFreeKiB: 23 * 1024 * 1024 };
    expect(pressureReasons(bigDisk, DEFAULT_PRESSURE_LIMITS)).toEqual([]);
    // A share is there for a machine that asks for it.
    expect(pressureReasons(bigDisk, pressureLimits({ storeFreePercent: 10 }))).toEqual(['store 9% free < 10%']);
    expect(pressureReasons({ buildDirFreeKiB: 512 * 1024 }, DEFAULT_PRESSURE_LIMITS)).toEqual(['build dir 512 MiB free < 1024 MiB']);
  });

  it('takes per-machine overrides; null turns a check off', () => {
    const p = parsePressure(psiOutput);
    expect(pressureReasons(p, pressureLimits({ cpuSomeAvg10: 90, storeFreeMiB: null, ioSomeAvg10: 10 }))).toEqual(['I/O pressure 12% > 10%']);
    // A load limit of the machine's own counts next to PSI; the default (its CPU count) does not.
    expect(pressureReasons(p, pressureLimits({ cpuSomeAvg10: null, storeFreeMiB: null, load1: 8 }))).toEqual(['load 9.5 > 8']);
    expect(pressureReasons(p, pressureLimits({ cpuSomeAvg10: null, storeFreeMiB: null }))).toEqual([]);
    expect(pressureReasons(p, pressureLimits({ cpuSomeAvg10: null, storeFreeMiB: 2, buildDirFreeMiB: 10_000 }))).toEqual(['build dir 8789 MiB free < 10000 MiB']);
  });

  it('ignores output that is not what the commands print', () => {
    expect(parsePressure('@cpu\nsome avg10=abc\n@loadavg\nnonsense\n@df\nno df here')).toEqual({});
    expect(parsePressure('some avg10=50.00 avg60=0 avg300=0 total=1')).toEqual({});
    // A CPU list is ranges of CPU numbers, each low to high, at most the kernel's 8192 CPUs.
    for (const cpus of ['0-', '3-1', 'all', '0-99999', '4 cores', '']) expect(parsePressure(`@cpus\n${cpus}`).cpus).toBeUndefined();
    // df names the store's filesystem, then the build directory's; more rows than that is not its answer.
    const df = psiOutput.slice(psiOutput.indexOf('@df'));
    expect(parsePressure(`${df}\n/dev/sdb 10 5 5 50% /x`)).toEqual({});
    expect(parsePressure(df.replace(/Filesystem.*\n/, ''))).toEqual({});
  });

  it('reads the store row alone when the build directory is missing (df names only what exists)', () => {
    const storeOnly = psiOutput.slice(psiOutput.indexOf('@df')).split('\n').slice(0, 3).join('\n');
    expect(parsePressure(storeOnly)).toEqual({ storeFreePercent: 6.3, storeFreeKiB: 4096 });
  });

  it('without a store directory df names the build directory alone, and its row is not taken for the store\'s', () => {
    const buildOnly = '@buildDf\nFilesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 10000000 1000000 9000000 10% /tmp\n';
    expect(parsePressureLook(buildOnly)).toEqual({ pressure: { buildDirFreePercent: 90, buildDirFreeKiB: 9000000 } });
    expect(parsePressureLook(`${buildOnly}/dev/sdb 10 5 5 50% /x\n`)).toEqual({ pressure: {} });
  });

  it('gives machines check the store\'s whole df row from the same look, and the run\'s sample stays the free space alone', () => {
    const look = parsePressureLook(psiOutput);
    expect(look.store).toEqual({ filesystem: 'tmpfs', mountPoint: '/nix/store', totalKiB: 65536, availableKiB: 4096, usedPercent: 94 });
    expect(look.pressure).toEqual(parsePressure(psiOutput));
    expect(Object.keys(look.pressure)).not.toContain('store');
    // A filesystem name with spaces, as df prints it (numbers matched from the right).
    const spaced = psiOutput.replace('tmpfs       ', 'map auto home');
    expect(parsePressureLook(spaced).store).toMatchObject({ filesystem: 'map auto home', mountPoint: '/nix/store' });
    expect(parsePressureLook(psiOutput.replace(/@df[\s\S]*/, '@df\n')).store).toBeUndefined();
  });

  it('formats for the live view and machines check', () => {
    expect(formatPressure(parsePressure(psiOutput))).toBe('cpu 82% mem 1% io 12% · store 6% free · build 90% free');
    expect(formatPressure({ load1: 1.5, cpus: 2 })).toBe('load 1.5/2');
  });
});

describe('pressure gate', () => {
  it('marks a builder loaded until a later look finds it recovered, looking at most once per interval', async () => {
    let cpu = 90;
    let looks = 0;
    const samples: string[][] = [];
    const gate = new PressureGate({
      hosts: ['ruby'],
      probe: async () => {
        looks++;
        return { cpuSomeAvg10: cpu };
      },
      limits: new Map([['ruby', DEFAULT_PRESSURE_LIMITS]]),
      intervalMs: 1_000,
      probeTimeoutMs: 5_000,
      onSample: (_host, sample) => samples.push(sample.reasons),
    });
    await gate.look();
    expect(gate.isLoaded('ruby')).toBe(true);
    const now = performance.now();
    expect(gate.due(now)).toBeGreaterThan(0);
    expect(looks).toBe(1);
    cpu = 10;
    gate.due(now + 1_001);
    await gate.look();
    expect(looks).toBe(2);
    expect(gate.isLoaded('ruby')).toBe(false);
    expect(samples).toEqual([['CPU pressure 90% > 75%'], []]);
  });

  it('a builder that cannot be probed keeps its last state', async () => {
    const gate = new PressureGate({
      hosts: ['kana'],
      probe: async () => {
        throw new Error('not connected');
      },
      limits: new Map(),
      intervalMs: 1_000,
      probeTimeoutMs: 5_000,
      onSample: () => undefined,
    });
    await gate.look();
    expect(gate.anyLoaded()).toBe(false);
  });

  it('a look ends after the probe timeout when a builder never answers; the others are read and a later look can start', async () => {
    vi.useFakeTimers();
    try {
      const seen: string[] = [];
      let probes = 0;
      const gate = new PressureGate({
        hosts: ['hung', 'calm'],
        // 'hung' stands for a SIGSTOPped builder: its probe never settles.
        probe: (host) => {
          probes++;
          return host === 'hung' ? new Promise<never>(() => undefined) : Promise.resolve({ cpuSomeAvg10: 95 });
        },
        limits: new Map([
          ['hung', DEFAULT_PRESSURE_LIMITS],
          ['calm', DEFAULT_PRESSURE_LIMITS],
        ]),
        intervalMs: 1_000,
        probeTimeoutMs: 5_000,
        onSample: (host) => seen.push(host),
      });
      let ended = false;
      const look = gate.look().then(() => (ended = true));
      await vi.advanceTimersByTimeAsync(4_999);
      expect(ended).toBe(false);
      expect(seen).toEqual(['calm']);
      expect(gate.isLoaded('calm')).toBe(true);
      await vi.advanceTimersByTimeAsync(1);
      await look;
      expect(ended).toBe(true);
      expect(gate.isLoaded('hung')).toBe(false);
      // The hung look no longer blocks the next one.
      void gate.look();
      expect(probes).toBe(4);
    } finally {
      vi.useRealTimers();
    }
  });
});
