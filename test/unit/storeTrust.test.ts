import { describe, expect, it } from 'vitest';
import { BuildStatus, buildResultFromExitStatus } from '../../src/remote/buildResult.js';
import { isTrustedKey, parsePublicKey, publicKeyCommand } from '../../src/remote/signingKeys.js';
import { storeRefusal } from '../../src/remote/storeRefusal.js';
import { probePath } from '../../src/remote/unsignedImportProbe.js';
import { recursiveSha256ContentAddress, recursiveSha256Path } from '../../src/storePath/contentAddressedPath.js';
import { fromNixBase32 } from '../../src/storePath/nixHash.js';

const KEY = 'signer-1:XjGmwZj9vZUaonW6NRqNFy19cDf6z7/APJPICFZmnbY=';

describe('content-addressed paths', () => {
  it("names a NAR's path as nix-store --print-fixed-path --recursive sha256 does (values printed by Nix 2.8)", () => {
    const hash = fromNixBase32('1kfd9kyjhs7zbyv2yd159fblzz8x1hwjpizxkw4ij6s80mdjhlma', 32)!;
    expect(recursiveSha256Path(hash, 'offload-probe')).toBe('/nix/store/18f98wb25hvpm80g35cv5814nmw4xzyk-offload-probe');
    expect(recursiveSha256ContentAddress(hash)).toBe('fixed:r:sha256:1kfd9kyjhs7zbyv2yd159fblzz8x1hwjpizxkw4ij6s80mdjhlma');
  });

  it('the trust probe is one small file, the same path everywhere (nix-store --add of the same file gives it)', () => {
    const { info, nar } = probePath();
    expect(info).toEqual({
      path: '/nix/store/hiv43zl40a7b5agq8g04a3d9frvv1qn5-offload-trust-probe',
      references: [],
      downloadSize: 184,
      narSize: 184,
      narHash: 'sha256:0w60a559jzhc80nzwnjn1m3x39kyz6vylynx7x6ankrcchjnvp8c',
      ca: 'fixed:r:sha256:0w60a559jzhc80nzwnjn1m3x39kyz6vylynx7x6ankrcchjnvp8c',
      sigs: [],
    });
    expect(nar.subarray(8, 21).toString()).toBe('nix-archive-1');
    expect(probePath('/gnu/store').info.path).toMatch(/^\/gnu\/store\/[0-9a-z]{32}-offload-trust-probe$/);
  });
});

describe('signing keys', () => {
  it('reads name:base64 of a 32-byte ed25519 key, nothing else', () => {
    expect(parsePublicKey(`${KEY}\n`)).toMatchObject({ name: 'signer-1' });
    expect(parsePublicKey('signer-1:c2hvcnQ=')).toBeUndefined();
    expect(parsePublicKey('no colon here')).toBeUndefined();
    expect(parsePublicKey(`${KEY} trailing`)).toBeUndefined();
  });

  it('quotes the secret key file for the builder shell, and refuses odd names', () => {
    expect(publicKeyCommand('/etc/nix/key.sec')).toBe("nix --extra-experimental-features nix-command key convert-secret-to-public < '/etc/nix/key.sec'");
    expect(publicKeyCommand("/etc/nix/it's.sec")).toBe("nix --extra-experimental-features nix-command key convert-secret-to-public < '/etc/nix/it'\\''s.sec'");
    expect(publicKeyCommand('relative.sec')).toBeUndefined();
    expect(publicKeyCommand('/etc/nix/a\nrm -rf /')).toBeUndefined();
  });

  it('trusts a key only when trusted-public-keys lists the same name with the same bytes', () => {
    expect(isTrustedKey(KEY, ['cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=', KEY])).toBe(true);
    expect(isTrustedKey(KEY, ['signer-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY='])).toBe(false);
    expect(isTrustedKey(KEY, ['other-1:XjGmwZj9vZUaonW6NRqNFy19cDf6z7/APJPICFZmnbY='])).toBe(false);
    expect(isTrustedKey(KEY, [])).toBe(false);
  });
});

describe("a store's refusals", () => {
  it('knows the errors retrying cannot change, with the fix where the reason does not say it', () => {
    const signature = storeRefusal("cannot add path '/nix/store/abc-top' because it lacks a valid signature");
    expect(signature).toMatchObject({ kind: 'signature' });
    expect(signature?.fix).toMatch(/trusted-users.*secret-key-files.*trusted-public-keys/);
    expect(storeRefusal("writing to file: No space left on device")?.kind).toBe('noSpace');
    expect(storeRefusal("hash mismatch importing path '/nix/store/abc-top';")?.kind).toBe('contentMismatch');
    expect(storeRefusal('you are not privileged to build input-addressed derivations')).toMatchObject({ kind: 'notTrusted', fix: expect.stringMatching(/trusted-users/) });
    expect(storeRefusal('importing paths is not allowed')?.kind).toBe('notAllowed');
  });

  it('leaves everything else to the retries', () => {
    expect(storeRefusal(undefined)).toBeUndefined();
    expect(storeRefusal('unexpected end-of-file')).toBeUndefined();
    expect(storeRefusal("cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused")).toBeUndefined();
  });
});

describe('build-paths replies', () => {
  it("reads a local store's exit status as nix-build's (100 + flags)", () => {
    expect(buildResultFromExitStatus(0, '')).toMatchObject({ status: BuildStatus.Built, timesBuilt: 1 });
    expect(buildResultFromExitStatus(100, "builder for 'x' failed with exit code 3").status).toBe(BuildStatus.PermanentFailure);
    expect(buildResultFromExitStatus(101, 'timed out').status).toBe(BuildStatus.TimedOut);
    expect(buildResultFromExitStatus(102, 'hash mismatch').status).toBe(BuildStatus.OutputRejected);
    expect(buildResultFromExitStatus(104, '').status).toBe(BuildStatus.NotDeterministic);
  });

  it("reads a daemon's status 1 by Nix's message (Nix 2.8's daemon drops the exit status)", () => {
    const status = (message: string) => buildResultFromExitStatus(1, message).status;
    expect(status("builder for '/nix/store/m1l-dexp-f.drv' failed with exit code 3;\n       last 1 log lines:")).toBe(BuildStatus.PermanentFailure);
    expect(status("building of '/nix/store/x.drv' timed out after 5 seconds of silence")).toBe(BuildStatus.TimedOut);
    expect(status("hash mismatch in fixed-output derivation '/nix/store/x.drv':")).toBe(BuildStatus.OutputRejected);
    expect(status('1 dependencies couldn\'t be built')).toBe(BuildStatus.DependencyFailed);
    expect(status('some error outside the builder')).toBe(BuildStatus.MiscFailure);
    expect(buildResultFromExitStatus(1, 'x').errorMsg).toBe('x');
  });
});
