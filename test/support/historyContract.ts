import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  HistoryError,
  historyLookup,
  importNomReports,
  type BuildHistory,
  type BuildSample,
  type Estimate,
} from '../../src/history/buildHistory.js';

/**
 * What every build history must do, whatever stores it: run by
 * test/unit/historySqlite.test.ts against SQLite and by
 * test/integration/statePostgres.test.ts against a real PostgreSQL.
 * `open` gives a fresh, empty history; opening it twice on the same store
 * gives two handles on the same data (`openAgain`).
 */
export interface HistoryStore {
  open(): Promise<BuildHistory>;
  openAgain(): Promise<BuildHistory>;
}

export function describeHistoryContract(label: string, store: () => HistoryStore): void {
  describe(`build history contract (${label})`, () => {
    const open: BuildHistory[] = [];
    let clock = Date.UTC(2024, 0, 1);
    const sample = (over: Partial<BuildSample> = {}): BuildSample => {
      clock += 1000;
      return { name: 'hello-2.12.1', system: 'x86_64-linux', host: 'ruby', speedFactor: 1, seconds: 10, finishedAt: new Date(clock), status: 'built', ...over };
    };
    let h: BuildHistory;
    const estimate = async (history: BuildHistory, name: string, system: string): Promise<Estimate | undefined> =>
      (await history.estimateMany([{ name, system }])).get(`${system}\u0000${name}`);
    const record = (history: BuildHistory, ...samples: BuildSample[]) => history.record(samples);

    beforeEach(async () => {
      h = await store().open();
      open.push(h);
    });
    afterEach(async () => {
      for (const history of open.splice(0)) await history.close();
    });

    it('estimates nothing for a name never built', async () => {
      expect(await estimate(h, 'hello-2.12.1', 'x86_64-linux')).toBeUndefined();
      expect(await h.estimates()).toEqual([]);
    });

    it('estimates the median of reference seconds (seconds × speedFactor)', async () => {
      await record(h, sample({ seconds: 10, speedFactor: 2 }), sample({ seconds: 30 }), sample({ seconds: 100 }));
      expect(await estimate(h, 'hello-2.12.1', 'x86_64-linux')).toEqual({ seconds: 30, samples: 3, matchedBy: 'name' });
    });

    it('uses only the last 10 successful samples', async () => {
      for (let i = 0; i < 10; i++) await record(h, sample({ seconds: 1000 }));
      for (let i = 0; i < 10; i++) await record(h, sample({ seconds: 5 }));
      await record(h, sample({ seconds: 9999, status: 'failed' }));
      expect(await estimate(h, 'hello-2.12.1', 'x86_64-linux')).toEqual({ seconds: 5, samples: 10, matchedBy: 'name' });
    });

    it('keeps systems apart and falls back to other versions of the same package', async () => {
      await record(h, sample({ system: 'aarch64-linux', seconds: 50 }), sample({ name: 'hello-2.10', seconds: 7 }));
      expect(await estimate(h, 'hello-2.12.1', 'aarch64-linux')).toMatchObject({ seconds: 50, matchedBy: 'name' });
      expect(await estimate(h, 'hello-2.12.1', 'x86_64-linux')).toEqual({ seconds: 7, samples: 1, matchedBy: 'reportName' });
      expect(await estimate(h, 'hello-2.12.1', 'riscv64-linux')).toBeUndefined();
    });

    it('answers many derivations in one lookup', async () => {
      await record(h, sample({ name: 'a-1', seconds: 4 }), sample({ name: 'b-1', seconds: 6, speedFactor: 1.5 }));
      const lookup = await historyLookup(h, [
        { name: 'a-1', system: 'x86_64-linux' },
        { name: 'b-1', system: 'x86_64-linux' },
        { name: 'c-1', system: 'x86_64-linux' },
      ]);
      expect([lookup('a-1', 'x86_64-linux'), lookup('b-1', 'x86_64-linux'), lookup('c-1', 'x86_64-linux')]).toEqual([4, 9, undefined]);
    });

    it('rejects nonsense samples with a sentence naming the derivation and host', async () => {
      await expect(record(h, sample({ seconds: -1 }))).rejects.toThrow(HistoryError);
      await expect(record(h, sample({ speedFactor: 0 }))).rejects.toThrow(/speedFactor 0 for "hello-2.12.1" on ruby/);
    });

    it('lists what it can estimate, newest first, and honours a limit', async () => {
      await record(h, sample({ name: 'a-1', seconds: 4 }));
      await record(h, sample({ name: 'b-1', seconds: 6 }));
      expect((await h.estimates()).map((e) => [e.name, e.seconds, e.samples])).toEqual([
        ['b-1', 6, 1],
        ['a-1', 4, 1],
      ]);
      expect((await h.estimates(1)).map((e) => e.name)).toEqual(['b-1']);
      expect((await h.estimates())[0]!.lastFinishedAt.getTime()).toBe(clock);
    });

    it('learns host speeds from names built on several hosts', async () => {
      // ruby is configured at 1 but really runs at 2; sapphire is configured (and is) 1.
      for (const name of ['a-1', 'b-1', 'c-1']) {
        await record(
          h,
          sample({ name, host: 'ruby', speedFactor: 1, seconds: 10 }),
          sample({ name, host: 'sapphire', speedFactor: 1, seconds: 20 }),
          sample({ name, host: 'local', speedFactor: 4, seconds: 5 }),
        );
      }
      await record(h, sample({ name: 'only-on-ruby', host: 'ruby', seconds: 1 }));
      // Reference per name = median(10×1, 20×1, 5×4) = 20 → ruby 2, sapphire 1, local 4.
      expect(Object.fromEntries(await h.hostSpeeds())).toEqual({
        local: { learnedSpeed: 4, samples: 3, configuredSpeed: 4 },
        ruby: { learnedSpeed: 2, samples: 3, configuredSpeed: 1 },
        sapphire: { learnedSpeed: 1, samples: 3, configuredSpeed: 1 },
      });
    });

    it('two handles on one store see each other’s samples', async () => {
      const other = await store().openAgain();
      open.push(other);
      await record(h, sample({ seconds: 10 }));
      await record(other, sample({ seconds: 20 }));
      await record(h, sample({ seconds: 30 }));
      expect(await estimate(other, 'hello-2.12.1', 'x86_64-linux')).toMatchObject({ seconds: 20, samples: 3 });
      expect(await estimate(h, 'hello-2.12.1', 'x86_64-linux')).toMatchObject({ seconds: 20, samples: 3 });
    });

    it('learns transfer rates per source from the last 10 transfers big enough to tell', async () => {
      const mib = 1024 * 1024;
      const transfer = (source: string, bytes: number, seconds: number) => {
        clock += 1000;
        return h.recordTransfer({ source, bytes, seconds, finishedAt: new Date(clock) });
      };
      for (let i = 0; i < 10; i++) await transfer('https://cache.example', 10 * mib, 100);
      for (let i = 0; i < 10; i++) await transfer('https://cache.example', 10 * mib, 1);
      await transfer('ruby', 4 * mib, 2);
      await transfer('ruby', 8 * mib, 2);
      await transfer('ruby', 6 * mib, 2);
      // Too small to say anything about a rate, or no time at all: ignored.
      await transfer('sapphire', 1024, 0.001);
      await transfer('ruby', 100 * mib, 0);
      const rates = await h.transferRates();
      expect(Object.fromEntries(rates)).toEqual({ 'https://cache.example': 10 * mib, ruby: 3 * mib });
      const other = await store().openAgain();
      open.push(other);
      expect((await other.transferRates()).get('ruby')).toBe(3 * mib);
    });

    it('imports nix-output-monitor reports, where other versions and unknown systems still estimate', async () => {
      const csv = [
        'hostname,derivation name,build platform,target platform,utc time,build seconds',
        ',hello,x86_64-linux,,2024-05-01 12:30:00,42',
        'ssh://nix@ruby,"weird, ""quoted"" name",,,2024-05-01 12:31:00,7',
        'localhost,gcc,,,2024-05-02 08:00:00,600',
      ].join('\n');
      expect(await importNomReports(h, csv, { speedFactors: new Map([['ruby', 2]]) })).toBe(3);
      expect(await estimate(h, 'hello-2.12.1', 'x86_64-linux')).toEqual({ seconds: 42, samples: 1, matchedBy: 'reportName' });
      expect(await estimate(h, 'gcc-13.2.0', 'aarch64-linux')).toEqual({ seconds: 600, samples: 1, matchedBy: 'reportName' });
      expect(await estimate(h, 'weird, "quoted" name', '')).toEqual({ seconds: 14, samples: 1, matchedBy: 'name' });
    });
  });
}
