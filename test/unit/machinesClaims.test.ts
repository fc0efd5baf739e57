import { describe, expect, it } from 'vitest';
import { buildableSystems, compareClaims, type MachineClaims } from '../../src/remote/builderClaims.js';
import { formatKiB } from '../../src/format/size.js';
import { DEFAULT_STORE_SPACE_LIMITS, loadFindings, storeSpaceFindings, verdictOf } from '../../src/remote/builderVerdict.js';
import type { BuilderNixConfig } from '../../src/remote/nixConfigProbe.js';

const x86: BuilderNixConfig = { system: 'x86_64-linux', extraPlatforms: ['i686-linux'], systemFeatures: ['benchmark', 'big-parallel'] };
const claims = (c: Partial<MachineClaims>): MachineClaims => ({ systems: ['x86_64-linux'], supportedFeatures: [], mandatoryFeatures: [], ...c });
const bySeverity = (findings: ReturnType<typeof compareClaims>, severity: string) => findings.filter((f) => f.severity === severity).map((f) => f.message);

describe('compareClaims', () => {
  it('claims the builder backs give no warning', () => {
    const findings = compareClaims(claims({ systems: ['x86_64-linux', 'i686-linux'], supportedFeatures: ['big-parallel'] }), x86);
    expect(verdictOf(findings).verdict).toBe('ok');
    expect(bySeverity(findings, 'note')).toEqual(['builds i686-linux through extra-platforms', 'offers benchmark, not claimed in the machines file']);
  });

  it('names a claimed system the builder cannot build', () => {
    const findings = compareClaims(claims({ systems: ['x86_64-linux', 'aarch64-linux'] }), x86);
    expect(bySeverity(findings, 'warning')).toEqual([
      'claims aarch64-linux but the builder is x86_64-linux with extra-platforms i686-linux, so builds for aarch64-linux would fail there',
    ]);
    expect(verdictOf(findings)).toMatchObject({ verdict: 'warning', reason: expect.stringMatching(/^claims aarch64-linux but/) });
  });

  it('a builder that can build none of the claimed systems is unusable', () => {
    const findings = compareClaims(claims({ systems: ['aarch64-linux', 'aarch64-darwin'] }), x86);
    expect(bySeverity(findings, 'unusable')).toEqual([
      'claims aarch64-linux, aarch64-darwin but the builder is x86_64-linux with extra-platforms i686-linux: it can build none of the claimed systems',
    ]);
    expect(bySeverity(findings, 'note')).toContain('its own system x86_64-linux is not claimed in the machines file');
  });

  it('names each claimed feature missing from system-features, mandatory ones marked', () => {
    const findings = compareClaims(claims({ supportedFeatures: ['kvm', 'big-parallel'], mandatoryFeatures: ['nixos-test'] }), x86);
    expect(bySeverity(findings, 'warning')).toEqual([
      'claims kvm but its system-features (benchmark, big-parallel) lack it, so builds requiring kvm would fail there',
      'claims nixos-test (mandatory) but its system-features (benchmark, big-parallel) lack it, so builds requiring nixos-test would fail there',
    ]);
    expect(verdictOf(findings).reason).toMatch(/^claims kvm but .* \(and 1 more\)$/);
  });

  it('an empty system-features list is said as such', () => {
    const findings = compareClaims(claims({ supportedFeatures: ['kvm'] }), { ...x86, systemFeatures: [] });
    expect(bySeverity(findings, 'warning')).toEqual(['claims kvm but its system-features (none) lack it, so builds requiring kvm would fail there']);
  });

  it('the systems a builder builds are its own plus extra-platforms', () => {
    expect(buildableSystems({ system: 'x86_64-linux', extraPlatforms: ['aarch64-linux', 'x86_64-linux'], systemFeatures: [] })).toEqual([
      'x86_64-linux',
      'aarch64-linux',
    ]);
  });
});

describe('store space and load', () => {
  const space = (availableKiB: number) => ({ filesystem: '/dev/vda', mountPoint: '/nix', totalKiB: 10 ** 9, availableKiB, usedPercent: 97 });

  it('warns below the warning limit and refuses a full store', () => {
    expect(storeSpaceFindings(space(DEFAULT_STORE_SPACE_LIMITS.warnBelowKiB))).toEqual([]);
    expect(storeSpaceFindings(space(1024 * 1024))).toEqual([
      { severity: 'warning', message: 'only 1.0 GiB free in the store (/nix, 97% used): large builds may run out of space' },
    ]);
    expect(storeSpaceFindings(space(50 * 1024))).toEqual([
      { severity: 'unusable', message: 'only 50 MiB free in the store (/nix, 97% used): inputs and outputs cannot be stored there' },
    ]);
    expect(storeSpaceFindings(space(500), { unusableBelowKiB: 100, warnBelowKiB: 1000 })[0]?.severity).toBe('warning');
  });

  it('a busy builder is a note, never a reason to skip it', () => {
    expect(loadFindings(0.5)).toEqual([]);
    expect(loadFindings(6.4)).toEqual([{ severity: 'note', message: expect.stringMatching(/^busy: load 6\.40 per CPU/) }]);
    expect(verdictOf(loadFindings(6.4)).verdict).toBe('ok');
  });

  it('formats sizes for people', () => {
    expect(formatKiB(512)).toBe('512 KiB');
    expect(formatKiB(1536)).toBe('1.5 MiB');
    expect(formatKiB(82876944)).toBe('79 GiB');
  });
});

describe('verdictOf', () => {
  it('the worst severity decides, its first finding is the reason', () => {
    expect(verdictOf([])).toEqual({ verdict: 'ok' });
    expect(
      verdictOf([
        { severity: 'warning', message: 'w' },
        { severity: 'unusable', message: 'u1' },
        { severity: 'unusable', message: 'u2' },
        { severity: 'note', message: 'n' },
      ]),
    ).toEqual({ verdict: 'unusable', reason: 'u1 (and 1 more)' });
  });
});
