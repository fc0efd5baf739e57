import { describe, expect, it } from 'vitest';
import { EarlyOutput } from '../../src/cli/earlyOutput.js';

describe('EarlyOutput', () => {
  it('holds what comes before the output exists and hands it on in order, then passes straight through', () => {
    const early = new EarlyOutput();
    early.warn('a');
    early.debug('b');
    const seen: string[] = [];
    early.attach({ warn: (m) => seen.push(`warn ${m}`), debug: (m) => seen.push(`debug ${m}`) });
    early.warn('c');
    expect(seen).toEqual(['warn a', 'debug b', 'warn c']);
    const written: string[] = [];
    early.flushUnattached((line) => written.push(line));
    expect(written).toEqual([]);
  });

  it('writes the held warnings (not debug lines) when the run ends without an output', () => {
    const early = new EarlyOutput();
    early.warn('ruby: permanently added ruby to the list of known hosts');
    early.debug('noise');
    const written: string[] = [];
    early.flushUnattached((line) => written.push(line));
    expect(written).toEqual(['offload: ruby: permanently added ruby to the list of known hosts\n']);
  });
});
