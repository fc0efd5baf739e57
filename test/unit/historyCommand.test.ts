import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteBuildHistory } from '../../src/history/sqliteBuildHistory.js';
import { historyAction, importNomAction, nomReportsPath, parseSpeedFactors, registerHistoryCommand } from '../../src/cli/historyCommand.js';
import { OffloadError } from '../../src/errors/offloadError.js';

let dir: string;
let db: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'offload-historycmd-'));
  db = join(dir, 'history.sqlite');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function sink() {
  let text = '';
  const stream = new Writable({
    write(chunk, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

const csv = [
  'hostname,derivation name,utc time,build seconds',
  'ssh://ruby,hello,2024-05-01 12:30:00,10',
  ',hello,2024-05-01 12:40:00,40',
  'ssh://ruby,"zlib, patched",2024-05-01 12:50:00,3',
  ',zlib,2024-05-01 12:55:00,9',
].join('\n');

describe('offload history', () => {
  it('import-nom then history --json: estimates and learned host speeds', async () => {
    const file = join(dir, 'build-reports.csv');
    writeFileSync(file, csv);
    const imported = sink();
    await importNomAction(file, { historyFile: db, system: 'x86_64-linux', speedFactors: new Map([['ruby', 2]]) }, imported.stream);
    expect(imported.text()).toBe(`imported 4 builds from ${file} into ${db}\n`);
    const out = sink();
    await historyAction({ historyFile: db, json: true }, out.stream);
    const json = JSON.parse(out.text());
    expect(json.estimates.map((e: { name: string; seconds: number }) => [e.name, e.seconds])).toEqual([
      ['zlib', 9],
      ['zlib, patched', 6],
      ['hello', 30],
    ]);
    // hello: ruby 10 s × 2 = 20, local 40 s × 1 = 40 → reference 30; ruby 30/10 = 3, local 30/40 = 0.75.
    expect(json.hosts).toEqual([
      { host: 'local', learnedSpeed: 0.75, configuredSpeed: 1, comparedNames: 1 },
      { host: 'ruby', learnedSpeed: 3, configuredSpeed: 2, comparedNames: 1 },
    ]);
  });

  it('prints a table, or says nothing is recorded yet', async () => {
    const empty = sink();
    await historyAction({ historyFile: db }, empty.stream);
    expect(empty.text()).toBe(`no builds recorded yet in ${db}\n`);
    const h = new SqliteBuildHistory(db);
    await h.record([{ name: 'gcc-13.2.0', system: 'x86_64-linux', host: 'ruby', speedFactor: 1, seconds: 600, finishedAt: new Date('2024-05-01T10:00:00Z'), status: 'built' }]);
    await h.close();
    const out = sink();
    await historyAction({ historyFile: db }, out.stream);
    expect(out.text()).toContain('gcc-13.2.0  x86_64-linux    10m00s        1  2024-05-01 10:00');
    expect(out.text()).toContain('host speeds: no derivation has been built on two hosts yet');
  });

  it('names the file it could not read', async () => {
    await expect(importNomAction(join(dir, 'missing.csv'), { historyFile: db })).rejects.toThrow(/cannot read nix-output-monitor's reports at .*missing\.csv/);
  });

  it('registers history and history import-nom on the program', async () => {
    const file = join(dir, 'r.csv');
    writeFileSync(file, csv);
    const codes: number[] = [];
    const p = new Command('offload').exitOverride();
    registerHistoryCommand(p, async (action) => {
      codes.push(await action());
    });
    const write = process.stdout.write;
    let printed = '';
    process.stdout.write = ((chunk: string) => ((printed += chunk), true));
    try {
      await p.parseAsync(['node', 'offload', 'history', '--history-file', db, 'import-nom', file, '--speed-factors', 'ruby=2']);
      await p.parseAsync(['node', 'offload', 'history', '--history-file', db, '--json']);
    } finally {
      process.stdout.write = write;
    }
    expect(codes).toEqual([0, 0]);
    expect(printed).toContain('imported 4 builds');
    expect(printed).toContain('"learnedSpeed": 3');
  });

  it('parses --speed-factors and finds nom’s reports under XDG_STATE_HOME', () => {
    expect(Object.fromEntries(parseSpeedFactors('ruby=2, local=0.5'))).toEqual({ ruby: 2, local: 0.5 });
    expect(() => parseSpeedFactors('ruby')).toThrow(OffloadError);
    expect(() => parseSpeedFactors('ruby=0')).toThrow(/host=number/);
    expect(nomReportsPath({ XDG_STATE_HOME: '/s', HOME: '/h' })).toBe('/s/nix-output-monitor/build-reports.csv');
    expect(nomReportsPath({ HOME: '/h' })).toBe('/h/.local/state/nix-output-monitor/build-reports.csv');
  });
});
