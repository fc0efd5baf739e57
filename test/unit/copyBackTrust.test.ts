import { describe, expect, it } from 'vitest';
import { builderImportFindings, keyReports, signingFindings, type LocalTrust } from '../../src/remote/trustFindings.js';
import { copyBackVerdict, type CopyBackInput } from '../../src/run/copyBackTrust.js';

const SIGNER = 'signer-1:XjGmwZj9vZUaonW6NRqNFy19cDf6z7/APJPICFZmnbY=';
const OTHER = 'other-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=';
const REFUSED = "cannot add path '/nix/store/hiv43zl40a7b5agq8g04a3d9frvv1qn5-offload-trust-probe' because it lacks a valid signature";

const base: CopyBackInput = {
  user: 'alice',
  local: { accepted: false, reason: REFUSED },
  builders: [],
  trustedPublicKeys: [SIGNER],
  confFile: '/etc/nix/nix.conf',
};

describe('can outputs be copied back? (decided before anything is built)', () => {
  it('a store that takes unsigned paths from the user needs no signature from anyone', () => {
    expect(copyBackVerdict({ ...base, local: { accepted: true }, builders: [{ host: 'ruby', signing: { ok: true, keys: [] } }] })).toEqual({ ok: true, signing: [], notes: [] });
  });

  it('an untrusted user is fine with builders that sign with a key the local store trusts', () => {
    const verdict = copyBackVerdict({ ...base, builders: [{ host: 'kana', signing: { ok: true, keys: [{ file: '/etc/nix/k', publicKey: SIGNER }] } }] });
    expect(verdict).toEqual({ ok: true, signing: ['kana'], notes: [] });
  });

  it('refuses in one message naming each builder that signs nothing or with an untrusted key, and both fixes', () => {
    const verdict = copyBackVerdict({
      ...base,
      builders: [
        { host: 'kana', signing: { ok: true, keys: [{ file: '/etc/nix/k', publicKey: SIGNER }] } },
        { host: 'ruby', signing: { ok: true, keys: [] } },
        { host: 'opal', signing: { ok: true, keys: [{ file: '/etc/nix/k', publicKey: OTHER }] } },
      ],
    });
    expect(verdict.ok).toBe(false);
    const message = (verdict as { message: string }).message;
    expect(message).toContain('nothing was built');
    expect(message).toContain('takes paths from alice only with a signature by a key in its trusted-public-keys');
    expect(message).toContain(`(it said: ${REFUSED})`);
    expect(message).toContain(`ruby signs nothing; opal signs with ${OTHER}, which it does not trust`);
    expect(message).not.toContain('kana');
    expect(message).toMatch(/add the user to trusted-users .* or let the builders sign what they build \(secret-key-files .*\) and add their public keys to the store's trusted-public-keys \(\/etc\/nix\/nix\.conf\)\.$/);
  });

  it('lets a builder with a post-build-hook through with a note: the hook may sign after the build with a key offload cannot learn', () => {
    const hook = '/etc/nix/sign-after-build';
    const verdict = copyBackVerdict({
      ...base,
      builders: [
        { host: 'ruby', signing: { ok: true, keys: [], postBuildHook: hook } },
        { host: 'opal', signing: { ok: true, keys: [{ file: '/etc/nix/k', publicKey: OTHER }], postBuildHook: hook } },
        { host: 'kana', signing: { ok: true, keys: [{ file: '/etc/nix/k', publicKey: SIGNER }], postBuildHook: hook } },
      ],
    });
    expect(verdict).toEqual({
      ok: true,
      signing: ['kana'],
      notes: [
        `cannot tell whether the local store will take what ruby builds: it has no secret-key-files, but its post-build-hook (${hook}) may sign after each build`,
        `cannot tell whether the local store will take what opal builds: it has only ${OTHER} in secret-key-files, which the local store does not trust, but its post-build-hook (${hook}) may sign after each build`,
      ],
    });
  });

  it('lets a builder through with a note when its key cannot be learned (the import then fails at once if refused)', () => {
    const verdict = copyBackVerdict({
      ...base,
      builders: [
        { host: 'kana', signing: { ok: true, keys: [{ file: '/etc/nix/k', problem: 'Permission denied' }] } },
        { host: 'ruby', signing: { ok: false, reason: 'cannot reach ruby' } },
      ],
    });
    expect(verdict).toEqual({
      ok: true,
      signing: [],
      notes: [
        'cannot tell whether the local store will take what kana builds: its key /etc/nix/k cannot be read (Permission denied)',
        'cannot tell whether the local store will take what ruby builds: its signing keys are unknown (cannot reach ruby)',
      ],
    });
  });
});

describe('machines check: signatures and trust', () => {
  const untrusted: LocalTrust = { user: 'alice', unsignedImports: { accepted: false, reason: REFUSED }, trustedPublicKeys: [SIGNER] };
  const trusted: LocalTrust = { ...untrusted, unsignedImports: { accepted: true } };

  it("reports each key and whether the local store trusts it", () => {
    expect(keyReports([{ file: 'a', publicKey: SIGNER }, { file: 'b', publicKey: OTHER }, { file: 'c', problem: 'Permission denied' }], untrusted)).toEqual([
      { file: 'a', publicKey: SIGNER, trustedLocally: true },
      { file: 'b', publicKey: OTHER, trustedLocally: false },
      { file: 'c', problem: 'Permission denied' },
    ]);
  });

  it('a builder whose outputs the untrusted local user could not take back is unusable, with both fixes', () => {
    const [none] = signingFindings('ruby', [], untrusted);
    expect(none).toMatchObject({ severity: 'unusable' });
    expect(none!.message).toMatch(/^signs nothing it builds, and the local store takes paths from alice only with a trusted signature, so what ruby builds cannot be copied back; to fix this, add the user to trusted-users/);
    const [other] = signingFindings('opal', keyReports([{ file: 'b', publicKey: OTHER }], untrusted), untrusted);
    expect(other).toMatchObject({ severity: 'unusable', message: expect.stringContaining(`signs with ${OTHER}, which the local store does not trust`) });
    expect(signingFindings('kana', keyReports([{ file: 'a', publicKey: SIGNER }], untrusted), untrusted)).toEqual([
      { severity: 'note', message: `signs what it builds with ${SIGNER}, which the local store trusts` },
    ]);
    expect(signingFindings('kana', [{ file: 'c', problem: 'Permission denied' }], untrusted)[0]).toMatchObject({ severity: 'warning' });
  });

  it('a builder with a post-build-hook is a warning, not unusable: the hook may sign after each build', () => {
    const [finding] = signingFindings('ruby', [], untrusted, '/etc/nix/sign-after-build');
    expect(finding).toEqual({
      severity: 'warning',
      message:
        'signs nothing it builds with secret-key-files, but its post-build-hook (/etc/nix/sign-after-build) may sign after each build, so offload cannot tell whether the local store will take what ruby builds',
    });
    expect(signingFindings('ruby', [], trusted, '/etc/nix/sign-after-build')).toEqual([]);
  });

  it('for a trusted local user signatures are information only', () => {
    expect(signingFindings('ruby', [], trusted)).toEqual([]);
    expect(signingFindings('opal', keyReports([{ file: 'b', publicKey: OTHER }], trusted), trusted)[0]).toMatchObject({ severity: 'note' });
  });

  it("an ssh user the builder's store refuses unsigned paths from makes the builder unusable, as Nix's docs require", () => {
    expect(builderImportFindings('root', { accepted: true })).toEqual([]);
    const [finding] = builderImportFindings('builder', { accepted: false, reason: REFUSED });
    expect(finding).toMatchObject({ severity: 'unusable' });
    expect(finding!.message).toContain('refuses unsigned paths from the ssh user builder');
    expect(finding!.message).toContain('add builder to trusted-users in its nix.conf');
  });
});
