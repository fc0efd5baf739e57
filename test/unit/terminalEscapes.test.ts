import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { closeColours, filterAnsiEscapes, stripColours } from '../../src/remote/terminalEscapes.js';
import { ServerLog } from '../../src/remote/serverLog.js';

const ESC = '\x1b';
const keep = (text: string) => filterAnsiEscapes(text, { keepColours: true });
const plain = (text: string) => filterAnsiEscapes(text, { keepColours: false });

describe('filterAnsiEscapes, as Nix filters build logs', () => {
  it('keeps SGR colours only when asked, and plain text as it is', () => {
    const line = `${ESC}[1;31merror:${ESC}[0m café ✓\tdone`;
    expect(keep(line)).toBe(line);
    expect(plain(line)).toBe('error: café ✓\tdone');
    expect(keep('nothing to do')).toBe('nothing to do');
    expect(keep(`${ESC}[38:5:196mred${ESC}[m`)).toBe(`${ESC}[38:5:196mred${ESC}[m`);
  });

  it('drops OSC 52 (clipboard) and OSC 0 (title) with their payload, ended by BEL or ST', () => {
    expect(keep(`a${ESC}]52;c;cm0gLXJmIH4=\x07b`)).toBe('ab');
    expect(keep(`a${ESC}]0;owned${ESC}\\b`)).toBe('ab');
    expect(keep(`a${ESC}]8;;http://x${ESC}\\link${ESC}]8;;${ESC}\\b`)).toBe('alinkb');
    expect(keep(`a${ESC}]52;c;never ends`)).toBe('a');
  });

  it('drops every CSI but SGR: cursor moves, erase, private modes, SGR look-alikes', () => {
    expect(keep(`a${ESC}[2J${ESC}[H${ESC}[?1049h${ESC}[5A${ESC}[6nb`)).toBe('ab');
    expect(keep(`a${ESC}[?25mb`)).toBe('ab');
    expect(keep(`a${ESC}[1 mb`)).toBe('ab');
  });

  it('drops DCS, SOS, PM, APC strings, two-byte escapes and character-set escapes', () => {
    expect(keep(`a${ESC}P1$qm${ESC}\\b${ESC}_apc${ESC}\\c${ESC}^pm\x07d${ESC}Xsos${ESC}\\e`)).toBe('abcde');
    expect(keep(`a${ESC}cb${ESC}7c${ESC}8d${ESC}(0e${ESC}(Bf`)).toBe('abcdef');
    expect(keep(`ends with ESC${ESC}`)).toBe('ends with ESC');
  });

  it('reads the C1 forms of CSI and OSC as a terminal would, and drops other C1 and C0 controls', () => {
    expect(keep('a\u009b31mred\u009b0m\u009d0;title\u009cb')).toBe(`a${ESC}[31mred${ESC}[0mb`);
    expect(keep('over\rwrite\b\x07\x00\x7f\u0085!')).toBe('overwrite!');
  });

  it('an ESC inside a string sequence ends it and starts the next sequence', () => {
    expect(keep(`a${ESC}]0;title${ESC}[31mred`)).toBe(`a${ESC}[31mred`);
  });

  it('stripColours drops what keepColours kept; closeColours resets after coloured text', () => {
    expect(stripColours(keep(`${ESC}[31mred${ESC}]0;t\x07`))).toBe('red');
    expect(closeColours(`${ESC}[31mred`)).toBe(`${ESC}[31mred${ESC}[0m`);
    expect(closeColours('plain')).toBe('plain');
  });
});

describe('ServerLog', () => {
  it('hands listeners builder lines with colours kept and every other escape gone', () => {
    const stderr = new PassThrough();
    const log = new ServerLog(stderr);
    const lines: string[] = [];
    log.listen((line) => lines.push(line));
    stderr.write(Buffer.from(`${ESC}]52;c;ZWNobyBwd25lZA==\x07${ESC}[31mred${ESC}[0m\r\n`));
    stderr.write(Buffer.from(`${ESC}]0;pwned\x07title\n`));
    expect(lines).toEqual([`${ESC}[31mred${ESC}[0m`, 'title']);
    expect(log.recentLines()).toEqual(lines);
  });
});
