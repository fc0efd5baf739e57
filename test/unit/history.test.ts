import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BuildSample } from '../../src/history/buildHistory.js';
import { defaultHistoryPath, SqliteBuildHistory } from '../../src/history/sqliteBuildHistory.js';
import { describeHistoryContract } from '../support/historyContract.js';
import { parseCsv } from '../../src/history/csv.js';
import { NomReportError, normaliseHost, parseNomReports } from '../../src/history/nomReports.js';
import { reportName } from '../../src/history/reportName.js';
import { median } from '../../src/history/median.js';

let dir: string;
let dbPath: string;
const open: SqliteBuildHistory[] = [];

function history(path = dbPath): SqliteBuildHistory {
  const h = new SqliteBuildHistory(path);
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
afterEach(async () => {
  for (const h of open.splice(0)) await h.close();
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

describe('SqliteBuildHistory', () => {
  it('creates missing directories, uses WAL and stamps the schema version', async () => {
    const h = history();
    await h.record([sample()]);
    const raw = new Database(dbPath, { readonly: true });
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(raw.pragma('user_version', { simple: true })).toBe(2);
    raw.close();
  });

  it('two processes writing at once lose nothing', async () => {
    const script = `
      import { SqliteBuildHistory } from ${JSON.stringify(new URL('../../src/history/sqliteBuildHistory.ts', import.meta.url).pathname)};
      const h = new SqliteBuildHistory(process.argv[1]);
      for (let i = 0; i < 150; i++) await h.record([{ name: 'p-' + process.argv[2], system: 's', host: 'h', speedFactor: 1, seconds: i, finishedAt: new Date(), status: 'built' }]);
      await h.close();`;
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
    expect((await h.estimates()).map((e) => e.name).sort()).toEqual(['p-a', 'p-b']);
    expect((await h.estimateMany([{ name: 'p-a', system: 's' }])).get('s\u0000p-a')?.samples).toBe(10);
    const raw = new Database(dbPath, { readonly: true });
    expect(raw.prepare('SELECT COUNT(*) AS n FROM builds').get()).toEqual({ n: 300 });
    raw.close();
  });

  it('refuses a file from a newer schema with a clear message', async () => {
    await history().close();
    const raw = new Database(dbPath);
    raw.pragma('user_version = 99');
    raw.close();
    expect(() => new SqliteBuildHistory(dbPath)).toThrow(/schema version 99, newer than this offload understands/);
  });

  it('says which file it could not open', () => {
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, '');
    expect(() => new SqliteBuildHistory(join(blocker, 'history.sqlite'))).toThrow(/cannot open the build history at .*a-file\/history.sqlite/);
  });
});

let storeDir: string;
describeHistoryContract('SQLite', () => ({
  async open() {
    storeDir = mkdtempSync(join(tmpdir(), 'offload-history-contract-'));
    return new SqliteBuildHistory(join(storeDir, 'history.sqlite'));
  },
  async openAgain() {
    return new SqliteBuildHistory(join(storeDir, 'history.sqlite'));
  },
}));

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
});
