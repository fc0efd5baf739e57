import { describe, expect, it } from 'vitest';
import { PathLocations } from '../../src/run/pathLocations.js';

const A = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a';
const B = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b';

describe('PathLocations', () => {
  it('prefers the target itself, then the local store, then a builder', () => {
    const loc = new PathLocations();
    loc.add(A, 'ruby');
    expect(loc.sourceFor(A, 'kana')).toBe('ruby');
    loc.add(A, 'local');
    expect(loc.sourceFor(A, 'kana')).toBe('local');
    loc.add(A, 'kana');
    expect(loc.sourceFor(A, 'kana')).toBe('kana');
    expect(loc.sourceFor(B, 'kana')).toBeUndefined();
  });

  it('forgets a host that went down and reports paths nobody holds any more', () => {
    const loc = new PathLocations();
    loc.addAll([A, B], 'ruby');
    loc.add(B, 'local');
    expect(loc.forgetHost('ruby')).toEqual([A]);
    expect(loc.has(A, 'ruby')).toBe(false);
    expect(loc.hostsOf(B)).toEqual(['local']);
    expect(loc.sourceFor(A, 'kana')).toBeUndefined();
  });
});
