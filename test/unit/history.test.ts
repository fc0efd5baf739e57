import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BuildHistory,
  defaultHistoryPath,
  HistoryError,
  historyLookup,
  type BuildSample,
} from '../../src/history/buildHistory.js';
import { parseCsv } from '../../src/history/csv.js';
import { NomReportError, normaliseHost, parseNomReports } from '../../src/history/nomReports.js';
import { reportName } from '../../src/history/reportName.js';
import { median } from '../../src/history/median.js';

let dir: string;
let dbPath: string;
const open: BuildHistory[] = [];

function history(path = dbPath): BuildHistory {
  const h = new BuildHistory(path);
  open.push(h);
  return h;
}

let clock = Date.UTC(2024, 0, 1);
function sample(over: Partial<BuildSample> = {}): BuildSample {
  clock += 1000;
  return {
    name: 'hello-2.12.1',
    system: 'x86_64-linux',
    host: 'ruby',
    speedFactor: 1,
    seconds: 10,
    finishedAt: new Date(clock),
    status: 'built',
    ...over,
  };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'offload-history-'));
  dbPath = join(dir, 'nested', 'offload', 'history.sqlite');
});
afterEach(() => {
  for (const h of open.splice(0)) h.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('median', () => {
  it('takes the middle value, or the mean of the middle two', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});

describe('reportName', () => {
  it('drops the version like nix-output-monitor does', () => {
    expect(reportName('hello-2.12.1')).toBe('hello');
    expect(reportName('python3-3.11.4')).toBe('python');
    expect(reportName('source')).toBe('source');
    expect(reportName('1.2')).toBe('1.2');
  });
});

describe('defaultHistoryPath', () => {
  it('follows XDG_CACHE_HOME, else ~/.cache', () => {
    expect(defaultHistoryPath({ XDG_CACHE_HOME: '/x/cache', HOME: '/home/u' })).toBe('/x/cache/offload/history.sqlite');
    expect(defaultHistoryPath({ HOME: '/home/u' })).toBe('/home/u/.cache/offload/history.sqlite');
    // A relative XDG path is invalid per the spec and ignored.
    expect(defaultHistoryPath({ XDG_CACHE_HOME: 'rel', HOME: '/home/u' })).toBe('/home/u/.cache/offload/history.sqlite');
  });
});

describe('BuildHistory', () => {
  it('creates missing directories, uses WAL and stamps the schema version', () => {
    const h = history();
    h.record(sample());
    const raw = new Database(dbPath, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBe(2);
    raw.close();
  });

  it('estimates nothing for a name never built', () => {
    expect(history().estimate('hello-2.12.1', 'x86_64-linux')).toBeUndefined();
  });

  it('estimates the median of reference seconds (seconds × speedFactor)', () => {
    const h = history();
    h.record(sample({ seconds: 10, speedFactor: 2 })); // 20 reference seconds
    h.record(sample({ seconds: 30, speedFactor: 1 })); // 30
    h.record(sample({ seconds: 100, speedFactor: 1 })); // 100, an outlier
    expect(h.estimate('hello-2.12.1', 'x86_64-linux')).toEqual({ seconds: 30, samples: 3, matchedBy: 'name' });
  });

  it('uses only the last 10 successful samples', () => {
    const h = history();
    for (let i = 0; i < 10; i++) h.record(sample({ seconds: 1000 }));
    for (let i = 0; i < 10; i++) h.record(sample({ seconds: 5 }));
    h.record(sample({ seconds: 9999, status: 'failed' }));
    expect(h.estimate('hello-2.12.1', 'x86_64-linux')).toEqual({ seconds: 5, samples: 10, matchedBy: 'name' });
  });

  it('keeps systems apart and falls back to other versions of the same package', () => {
    const h = history();
    h.record(sample({ system: 'aarch64-linux', seconds: 50 }));
    h.record(sample({ name: 'hello-2.10', seconds: 7 }));
    expect(h.estimate('hello-2.12.1', 'aarch64-linux')).toMatchObject({ seconds: 50, matchedBy: 'name' });
    expect(h.estimate('hello-2.12.1', 'x86_64-linux')).toEqual({ seconds: 7, samples: 1, matchedBy: 'reportName' });
    expect(h.estimate('hello-2.12.1', 'riscv64-linux')).toBeUndefined();
  });

  it('rejects nonsense samples with a sentence naming the derivation and host', () => {
    const h = history();
    expect(() => h.record(sample({ seconds: -1 }))).toThrow(HistoryError);
    expect(() => h.record(sample({ speedFactor: 0 }))).toThrow(/speedFactor 0 for "hello-2.12.1" on ruby/);
  });

  it('historyLookup returns reference seconds or undefined', () => {
    const h = history();
    h.record(sample({ seconds: 12, speedFactor: 1.5 }));
    const lookup = historyLookup(h);
    expect(lookup('hello-2.12.1', 'x86_64-linux')).toBe(18);
    expect(lookup('unknown-1.0', 'x86_64-linux')).toBeUndefined();
  });

  it('lists what it can estimate, newest first', () => {
    const h = history();
    h.record(sample({ name: 'a-1', seconds: 4 }));
    h.record(sample({ name: 'b-1', seconds: 6 }));
    expect(h.estimates().map((e) => [e.name, e.seconds, e.samples])).toEqual([
      ['b-1', 6, 1],
      ['a-1', 4, 1],
    ]);
  });

  it('learns host speeds from names built on several hosts', () => {
    const h = history();
    // ruby is configured at 1 but really runs at 2; sapphire is configured (and is) 1.
    for (const name of ['a-1', 'b-1', 'c-1']) {
      h.record(sample({ name, host: 'ruby', speedFactor: 1, seconds: 10 }));
      h.record(sample({ name, host: 'sapphire', speedFactor: 1, seconds: 20 }));
      h.record(sample({ name, host: 'local', speedFactor: 4, seconds: 5 }));
    }
    h.record(sample({ name: 'only-on-ruby', host: 'ruby', seconds: 1 }));
    const speeds = h.hostSpeeds();
    // Reference per name = median(10×1, 20×1, 5×4) = 20 → ruby 2, sapphire 1, local 4.
    expect(Object.fromEntries(speeds)).toEqual({
      local: { learnedSpeed: 4, samples: 3, configuredSpeed: 4 },
      ruby: { learnedSpeed: 2, samples: 3, configuredSpeed: 1 },
      sapphire: { learnedSpeed: 1, samples: 3, configuredSpeed: 1 },
    });
  });

  it('two instances on one file see each other’s samples', () => {
    const a = history();
    const b = history();
    a.record(sample({ seconds: 10 }));
    b.record(sample({ seconds: 20 }));
    a.record(sample({ seconds: 30 }));
    expect(b.estimate('hello-2.12.1', 'x86_64-linux')).toMatchObject({ seconds: 20, samples: 3 });
    expect(a.estimate('hello-2.12.1', 'x86_64-linux')).toMatchObject({ seconds: 20, samples: 3 });
  });

  it('two processes writing at once lose nothing', async () => {
    const script = `
      import { BuildHistory } from ${JSON.stringify(new URL('../../src/history/buildHistory.ts', import.meta.url).pathname)};
      const h = new BuildHistory(process.argv[1]);
      for (let i = 0; i < 150; i++) h.record({ name: 'p-' + process.argv[2], system: 's', host: 'h', speedFactor: 1, seconds: i, finishedAt: new Date(), status: 'built' });
      h.close();`;
    const run = (tag: string) =>
      new Promise<void>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dbPath, tag], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer ${tag} exited ${code}: ${stderr}`))));
      });
    await Promise.all([run('a'), run('b')]);
    const h = history();
    const counts = h.estimates().map((e) => e.name).sort();
    expect(counts).toEqual(['p-a', 'p-b']);
    expect(h.estimate('p-a', 's')?.samples).toBe(10);
    const raw = new Database(dbPath, { readonly: true });
    expect(raw.prepare('SELECT COUNT(*) AS n FROM builds').get()).toEqual({ n: 300 });
    raw.close();
  });

  it('refuses a file from a newer schema with a clear message', () => {
    history().close();
    const raw = new Database(dbPath);
    raw.pragma('user_version = 99');
    raw.close();
    expect(() => new BuildHistory(dbPath)).toThrow(/schema version 99, newer than this offload understands/);
  });

  it('says which file it could not open', () => {
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, '');
    expect(() => new BuildHistory(join(blocker, 'history.sqlite'))).toThrow(/cannot open the build history at .*a-file\/history.sqlite/);
  });
});

describe('parseCsv', () => {
  it('handles quotes, doubled quotes, embedded commas and line breaks, CRLF', () => {
    expect(parseCsv('a,"b,c","say ""hi"""\r\n"multi\nline",,x\n\n')).toEqual([
      ['a', 'b,c', 'say "hi"'],
      ['multi\nline', '', 'x'],
    ]);
  });
  it('rejects an unclosed quote', () => {
    expect(() => parseCsv('a,"b\n')).toThrow(/not closed/);
  });
});

describe('nix-output-monitor build reports', () => {
  const current = [
    'hostname,derivation name,build platform,target platform,utc time,build seconds',
    ',hello,x86_64-linux,,2024-05-01 12:30:00,42',
    'ssh://nix@ruby,"weird, ""quoted"" name",,,2024-05-01 12:31:00,7',
    'localhost,gcc,,,2024-05-02 08:00:00,600',
  ].join('\n');

  it('reads the header layout, quoted names and hosts', () => {
    expect(parseNomReports(current)).toEqual([
      { host: 'local', name: 'hello', system: 'x86_64-linux', seconds: 42, finishedAt: new Date('2024-05-01T12:30:00Z') },
      { host: 'ruby', name: 'weird, "quoted" name', system: '', seconds: 7, finishedAt: new Date('2024-05-01T12:31:00Z') },
      { host: 'local', name: 'gcc', system: '', seconds: 600, finishedAt: new Date('2024-05-02T08:00:00Z') },
    ]);
  });

  it('reads the four-column header layout and applies a given system', () => {
    const text = 'hostname,derivation name,utc time,build seconds\nruby,zlib,2024-01-01 00:00:00,3\n';
    expect(parseNomReports(text, { system: 'aarch64-linux' })).toEqual([
      { host: 'ruby', name: 'zlib', system: 'aarch64-linux', seconds: 3, finishedAt: new Date('2024-01-01T00:00:00Z') },
    ]);
  });

  it('reads the older headerless host,name,seconds layout', () => {
    const at = new Date('2023-01-01T00:00:00Z');
    expect(parseNomReports(',hello,5\nruby,zlib,3\n', { importedAt: at })).toEqual([
      { host: 'local', name: 'hello', system: '', seconds: 5, finishedAt: at },
      { host: 'ruby', name: 'zlib', system: '', seconds: 3, finishedAt: at },
    ]);
  });

  it('names the file and record of a bad row', () => {
    const text = 'hostname,derivation name,utc time,build seconds\nruby,zlib,yesterday,3\n';
    expect(() => parseNomReports(text, { source: 'reports.csv' })).toThrow(NomReportError);
    expect(() => parseNomReports(text, { source: 'reports.csv' })).toThrow(/reports.csv record 2: "yesterday" is not a UTC time/);
    expect(() => parseNomReports('a,b\n')).toThrow(/three columns/);
    expect(() => parseNomReports(',hello,soon\n')).toThrow(/"soon" is not a number of seconds/);
  });

  it('normalises Nix machine names to offload host ids', () => {
    expect(normaliseHost('')).toBe('local');
    expect(normaliseHost('ssh-ng://root@builder.example:22')).toBe('builder.example:22');
    expect(normaliseHost('builder')).toBe('builder');
  });

  it('imports into the history, where other versions and unknown systems still estimate', () => {
    const h = history();
    expect(h.importNomReports(current, { speedFactors: new Map([['ruby', 2]]) })).toBe(3);
    expect(h.estimate('hello-2.12.1', 'x86_64-linux')).toEqual({ seconds: 42, samples: 1, matchedBy: 'reportName' });
    // gcc was imported without a system: it still serves any system.
    expect(h.estimate('gcc-13.2.0', 'aarch64-linux')).toEqual({ seconds: 600, samples: 1, matchedBy: 'reportName' });
    expect(h.estimate('weird, "quoted" name', '')).toEqual({ seconds: 14, samples: 1, matchedBy: 'name' });
  });
});
