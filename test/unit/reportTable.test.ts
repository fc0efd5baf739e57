import stringWidth from 'string-width';
import { describe, expect, it } from 'vitest';
import type { Machine } from '../../src/config/machine.js';
import { machinesListToText, type MachineListing } from '../../src/report/machinesReport.js';
import { renderTable } from '../../src/report/table.js';
import { ED25519, pinOf } from './hostKeyFixtures.js';

const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');
/** Column where `text` starts on `line`, in display columns. */
const columnOf = (line: string, text: string) => stringWidth(line.slice(0, line.indexOf(text)));

describe('renderTable', () => {
  it('measures display width: wide characters take two columns, escape codes none', () => {
    const text = renderTable(['name', 'host'], [
      ['日本語', 'H1'],
      ['\x1b[1mbold\x1b[22m', 'H2'],
      ['plain', 'H3'],
      ['🦀 crab', 'H4'],
    ]);
    const lines = text.split('\n');
    const hostColumn = columnOf(lines[0]!, 'host');
    expect(hostColumn).toBe(9); // 🦀 crab: 2 + 1 + 4 columns, then the gap
    expect(lines.slice(1).map((l, i) => columnOf(l, `H${i + 1}`))).toEqual([hostColumn, hostColumn, hostColumn, hostColumn]);
  });

  it('styles after layout, so a coloured table lines up exactly like the plain one', () => {
    const rows = [['critical', '1s'], ['other-derivation', '20s']];
    const plain = renderTable(['derivation', 'finish'], rows, new Set([1]));
    const coloured = renderTable(['derivation', 'finish'], rows, new Set([1]), { style: (row, _c, t) => (row === 0 ? `\x1b[1m${t}\x1b[22m` : t) });
    expect(coloured).not.toBe(plain);
    expect(stripAnsi(coloured)).toBe(plain);
  });

  it('without a width every row stays on one line, however wide', () => {
    const long = 'x'.repeat(300);
    expect(renderTable(['a', 'b'], [[long, 'y']], new Set(), { wrap: ['a'] }).split('\n')).toHaveLength(2);
  });

  it('wraps wrap columns at spaces and commas to fit the width', () => {
    const text = renderTable(['host', 'systems', 'jobs'], [['ruby', 'x86_64-linux,aarch64-linux,i686-linux', '2']], new Set([2]), { width: 30, wrap: ['systems'] });
    const lines = text.split('\n');
    for (const line of lines) expect(stringWidth(line)).toBeLessThanOrEqual(30);
    expect(lines.slice(1).map((l) => l.slice(columnOf(lines[0]!, 'systems')).trim().replace(/\s+\d$/, ''))).toEqual(['x86_64-linux,', 'aarch64-linux,', 'i686-linux']);
  });

  it('drops columns in order when wrapping cannot fit, and shows what they held below the table', () => {
    const text = renderTable(
      ['host', 'key', 'notes'],
      [['ruby', '/root/.ssh/id_ed25519', 'fine'], ['kana', '-', 'x']],
      new Set(),
      { width: 33, wrap: ['notes'], dropOrder: ['key'] },
    );
    expect(text.split('\n')).toEqual(['host  notes', 'ruby  fine', 'kana  x', '', 'ruby: key /root/.ssh/id_ed25519']);
  });
});

describe('the machines table on a terminal', () => {
  const machine = (name: string, overrides: Partial<Machine> = {}): MachineListing => ({
    machine: {
      hostName: name,
      address: `${name}.builders.example.org`,
      port: 2222,
      sshUser: 'builder',
      sshKey: `/home/someone/.ssh/id_ed25519_${name}`,
      systems: ['x86_64-linux', 'aarch64-linux', 'i686-linux'],
      supportedFeatures: ['kvm', 'big-parallel', 'nixos-test', 'benchmark'],
      mandatoryFeatures: [],
      maxJobs: 8,
      speedFactor: 2,
      publicHostKey: pinOf(ED25519.line),
      ...overrides,
    },
    hostKey: { source: 'pinned', fingerprints: [`ssh-ed25519 ${ED25519.fingerprint}`], from: ['publicHostKey'], acceptUnknown: false },
  });
  const input = {
    source: '/etc/nix/machines',
    warnings: [],
    machines: [machine('aquamarine'), machine('ruby'), machine('kana', { mandatoryFeatures: ['kvm'] })],
    local: {
      maxJobs: 2,
      speedFactor: 1,
      systems: ['x86_64-linux'],
      supportedFeatures: ['benchmark', 'big-parallel'],
      buildersUseSubstitutes: false,
      maxSilentTime: 0,
      buildTimeout: 0,
      store: 'auto',
      origins: {
        maxJobs: '/etc/nix/nix.conf:3',
        speedFactor: 'default',
        systems: 'system: default (nix show-config); extra-platforms: default (nix show-config)',
        supportedFeatures: 'default (nix show-config)',
        buildersUseSubstitutes: 'default',
        maxSilentTime: 'NIX_CONFIG line 1',
        buildTimeout: 'default',
      },
    },
  };

  it('runs past 150 columns when nothing limits it (a pipe)', () => {
    expect(Math.max(...machinesListToText(input, { color: false }).split('\n').map((l) => stringWidth(l)))).toBeGreaterThan(150);
  });

  it.each([60, 80, 100, 120, 160])('fits %i columns and still names every host, its fingerprint and its key', (width) => {
    const text = machinesListToText(input, { color: true, width });
    for (const line of text.split('\n')) expect(stringWidth(line)).toBeLessThanOrEqual(width);
    const plain = stripAnsi(text);
    const keyColumnShown = plain.split('\n')[2]!.split(/ {2,}/).includes('KEY');
    for (const name of ['aquamarine', 'ruby', 'kana']) {
      expect(plain).toMatch(new RegExp(`^${name} `, 'm'));
      // A key file too wide for its column is cut across lines; one that left the table follows it whole.
      if (keyColumnShown) expect(plain).toContain('/home/someone/');
      else expect(plain.replace(/\s+/g, ' ')).toMatch(new RegExp(`${name}: .*?key /home/someone/\\.ssh/id_ed25519_${name}\\b`));
    }
    expect(plain).toContain(ED25519.fingerprint.slice(0, 12));
  });
});
