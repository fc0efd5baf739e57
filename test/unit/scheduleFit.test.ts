import { describe, expect, it } from 'vitest';
import { ExitCode, OffloadError } from '../../src/errors/offloadError.js';
import { assertEveryJobFits, NoHostFitsError, rejectionReason, slotLimit } from '../../src/schedule/fit.js';
import type { Host } from '../../src/schedule/types.js';

function host(id: string, over: Partial<Host> = {}): Host {
  return {
    id,
    systems: ['x86_64-linux'],
    supportedFeatures: [],
    mandatoryFeatures: [],
    maxJobs: 2,
    speedFactor: 1,
    isLocal: id === 'local',
    ...over,
  };
}

const job = (over: Partial<{ id: string; system: string; requiredFeatures: string[]; isBuiltin: boolean }> = {}) => ({
  id: '/nix/store/aaaa-foo.drv',
  system: 'x86_64-linux',
  requiredFeatures: [] as string[],
  isBuiltin: false,
  ...over,
});

describe('rejectionReason', () => {
  it('accepts a host with the system and all features', () => {
    expect(rejectionReason(host('a', { supportedFeatures: ['kvm'] }), job({ requiredFeatures: ['kvm'] }))).toBeNull();
  });
  it('names the systems the host has', () => {
    expect(rejectionReason(host('a'), job({ system: 'aarch64-linux' }))).toBe('system x86_64-linux only');
    expect(rejectionReason(host('a', { systems: ['x86_64-linux', 'i686-linux'] }), job({ system: 'aarch64-linux' }))).toBe(
      'systems x86_64-linux, i686-linux only',
    );
  });
  it('names missing features; mandatory features count as offered', () => {
    expect(rejectionReason(host('a'), job({ requiredFeatures: ['kvm'] }))).toBe('lacks feature kvm');
    expect(rejectionReason(host('a', { mandatoryFeatures: ['kvm'] }), job({ requiredFeatures: ['kvm'] }))).toBeNull();
  });
  it('rejects jobs that do not require every mandatory feature', () => {
    expect(rejectionReason(host('a', { mandatoryFeatures: ['benchmark'] }), job())).toBe(
      'only builds jobs that require benchmark',
    );
  });
  it('treats max-jobs 0 as no slots', () => {
    expect(rejectionReason(host('a', { maxJobs: 0 }), job())).toBe('max-jobs is 0');
  });
  it('runs builtin jobs only locally, even with local max-jobs 0', () => {
    const b = job({ system: 'builtin', isBuiltin: true });
    expect(rejectionReason(host('local', { maxJobs: 0 }), b)).toBeNull();
    expect(rejectionReason(host('ruby'), b)).toBe('builtin derivations run only on the local machine');
    expect(slotLimit(host('local', { maxJobs: 0 }), true)).toBe(1);
    expect(slotLimit(host('local', { maxJobs: 3 }), true)).toBe(3);
    expect(slotLimit(host('local', { maxJobs: 0 }), false)).toBe(0);
    expect(slotLimit(host('ruby'), true)).toBe(0);
  });
});

describe('NoHostFitsError', () => {
  it('names the derivation, its needs and every host with its reason', () => {
    const hosts = [
      host('local'),
      host('ruby', { systems: ['aarch64-linux'] }),
      host('kana', { systems: ['aarch64-linux'], supportedFeatures: ['kvm'], maxJobs: 0 }),
    ];
    const j = job({ id: '/nix/store/xyz-foo.drv', system: 'aarch64-linux', requiredFeatures: ['kvm'] });
    let err: unknown;
    try {
      assertEveryJobFits([job(), j], hosts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NoHostFitsError);
    expect(err).toBeInstanceOf(OffloadError);
    expect((err as NoHostFitsError).exitCode).toBe(ExitCode.noHostFits);
    expect((err as Error).message).toBe(
      'no machine can build /nix/store/xyz-foo.drv (system aarch64-linux, features {kvm}): ' +
        'local: system x86_64-linux only; ruby: lacks feature kvm; kana: max-jobs is 0',
    );
  });
  it('does not throw when every job fits somewhere', () => {
    expect(() => assertEveryJobFits([job(), job({ isBuiltin: true, system: 'builtin' })], [host('local')])).not.toThrow();
  });
});
