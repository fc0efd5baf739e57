import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseTimeout, registerMachinesCommand, withParentOptions } from '../../src/cli/machinesCommand.js';
import { OffloadError } from '../../src/errors/offloadError.js';
import type { BuilderCheck } from '../../src/remote/builderProbe.js';
import { machinesCheckToJson, machinesCheckToText } from '../../src/report/machinesReport.js';

const ok: BuilderCheck = {
  hostName: 'kana',
  address: '127.0.0.1',
  port: 2201,
  user: 'root',
  reachable: true,
  connectMs: 42,
  authenticated: true,
  hostKey: { status: 'pinned', fingerprints: ['ssh-ed25519 SHA256:abc'] },
  nixVersion: '2.8.0',
  serveProtocol: '2.7',
  nix: { system: 'x86_64-linux', extraPlatforms: ['aarch64-linux'], systemFeatures: ['kvm'] },
  claims: { systems: ['x86_64-linux', 'aarch64-linux'], supportedFeatures: ['kvm', 'nixos-test'], mandatoryFeatures: [] },
  load: { oneMinute: 1, cpus: 4, perCpu: 0.25 },
  store: { filesystem: '/dev/vda', mountPoint: '/nix', totalKiB: 10 ** 8, availableKiB: 82876944, usedPercent: 23 },
  signingKeys: [{ file: '/etc/nix/key.sec', publicKey: `kana-1:${'A'.repeat(43)}=`, trustedLocally: true }],
  unsignedImports: { accepted: true },
  findings: [
    { severity: 'note', message: 'builds aarch64-linux through extra-platforms' },
    { severity: 'warning', message: 'claims nixos-test but its system-features (kvm) lack it' },
  ],
  verdict: 'warning',
  reason: 'claims nixos-test but its system-features (kvm) lack it',
};
const down: BuilderCheck = {
  hostName: 'ruby',
  address: '127.0.0.1',
  port: 2202,
  reachable: false,
  authenticated: false,
  hostKey: { status: 'not checked', fingerprints: [] },
  claims: { systems: ['x86_64-linux'], supportedFeatures: [], mandatoryFeatures: [] },
  findings: [{ severity: 'unusable', message: 'cannot reach ruby at 127.0.0.1:2202: connection refused' }],
  verdict: 'unusable',
  reason: 'cannot reach ruby at 127.0.0.1:2202: connection refused',
};

describe('machines check report', () => {
  const input = { source: '/etc/nix/machines', timeoutMs: 10_000, checks: [ok, down] };

  it('text: one row per host, findings worst first, a summary naming the unusable', () => {
    const text = machinesCheckToText(input, { color: false });
    expect(text).toMatch(/^kana\s+warning\s+42 ms\s+pinned\s+2\.8\.0\s+2\.7\s+x86_64-linux,\+aarch64-linux\s+kvm\s+0\.25\s+79 GiB\s+-\s+kana-1 \(trusted\)$/m);
    expect(text).toMatch(/^ruby\s+unusable\s+unreachable\s+not checked\s+-\s+-/m);
    const findingLines = text.split('\n').filter((l) => /^(kana|ruby): /.test(l));
    expect(findingLines).toEqual([
      'kana: warning: claims nixos-test but its system-features (kvm) lack it',
      'kana: note: builds aarch64-linux through extra-platforms',
      'ruby: unusable: cannot reach ruby at 127.0.0.1:2202: connection refused',
    ]);
    expect(text.trimEnd().split('\n').at(-1)).toBe('1 of 2 machines usable (1 with warnings); unusable: ruby.');
  });

  it('colour only paints the verdict, the columns stay aligned', () => {
    const plain = machinesCheckToText(input, { color: false });
    const coloured = machinesCheckToText(input, { color: true });
    expect(coloured.replace(/\x1b\[\d+m/g, '')).toBe(plain);
    expect(coloured).toContain('\x1b[33mwarning\x1b[39m');
  });

  it('JSON: stable fields, nulls for what was not learnt', () => {
    const json = machinesCheckToJson(input) as { usable: number; unusable: string[]; machines: Array<Record<string, unknown>> };
    expect(json.usable).toBe(1);
    expect(json.unusable).toEqual(['ruby']);
    expect(json.machines[0]).toMatchObject({ hostName: 'kana', verdict: 'warning', nixVersion: '2.8.0', serveProtocol: '2.7', connectMs: 42 });
    expect(json.machines[1]).toMatchObject({ hostName: 'ruby', reachable: false, nixVersion: null, nix: null, load: null, store: null });
  });

  it('says what the local store takes from the user, and the keys it trusts', () => {
    const localTrust = {
      user: 'alice',
      unsignedImports: { accepted: false as const, reason: "cannot add path '/nix/store/x-p' because it lacks a valid signature" },
      trustedPublicKeys: [`kana-1:${'A'.repeat(43)}=`, 'cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY='],
    };
    const text = machinesCheckToText({ ...input, localTrust }, { color: false });
    expect(text).toContain(
      "Local store: takes paths from alice only with a signature by a key in its trusted-public-keys (kana-1, cache.nixos.org-1); it said: cannot add path '/nix/store/x-p' because it lacks a valid signature.",
    );
    const json = machinesCheckToJson({ ...input, localTrust }) as { local: unknown; machines: Array<Record<string, unknown>> };
    expect(json.local).toEqual(localTrust);
    expect(json.machines[0]).toMatchObject({ signingKeys: [{ publicKey: `kana-1:${'A'.repeat(43)}=`, trustedLocally: true }], unsignedImports: { accepted: true } });
    expect(json.machines[1]).toMatchObject({ signingKeys: null, unsignedImports: null });
    const trusted = machinesCheckToText({ ...input, localTrust: { ...localTrust, unsignedImports: { accepted: true as const } } }, { color: false });
    expect(trusted).toContain('Local store: takes unsigned paths from alice (a trusted user, or a store of its own), so builders need not sign.');
  });

  it('a post-build-hook shows in SIGNS WITH and the JSON: it may sign with a key offload cannot learn', () => {
    const hooked: BuilderCheck = { ...ok, hostName: 'opal', signingKeys: [], postBuildHook: '/etc/nix/sign-after-build' };
    const text = machinesCheckToText({ ...input, checks: [hooked] }, { color: false });
    expect(text).toMatch(/^opal\s+warning\s.*\spost-build-hook\?$/m);
    const json = machinesCheckToJson({ ...input, checks: [hooked, ok] }) as { machines: Array<Record<string, unknown>> };
    expect(json.machines[0]).toMatchObject({ signingKeys: [], postBuildHook: '/etc/nix/sign-after-build' });
    expect(json.machines[1]).toMatchObject({ postBuildHook: null });
  });

  it('says so when there is nothing to check', () => {
    expect(machinesCheckToText({ ...input, checks: [] }, { color: false })).toMatch(/No machines configured: nothing to check\.$/);
  });
});

describe('machines check options', () => {
  it('--timeout takes seconds, ms or minutes', () => {
    expect(parseTimeout('10s')).toBe(10_000);
    expect(parseTimeout('2.5')).toBe(2500);
    expect(parseTimeout('1500ms')).toBe(1500);
    expect(parseTimeout('1m')).toBe(60_000);
    expect(() => parseTimeout('0s')).toThrow(OffloadError);
    expect(() => parseTimeout('soon')).toThrow(/--timeout: expected a duration/);
  });

  /** The action's options as the real CLI tree hands them over. */
  function parsedCheckOptions(argv: string[], positionalRoot: boolean): Record<string, unknown> {
    const program = new Command('offload').exitOverride();
    if (positionalRoot) program.enablePositionalOptions();
    registerMachinesCommand(program, async () => undefined);
    const check = program.commands.find((c) => c.name() === 'machines')!.commands.find((c) => c.name() === 'check')!;
    let seen: Record<string, unknown> = {};
    check.action(() => {
      seen = withParentOptions(check);
    });
    program.parse(['node', 'offload', ...argv]);
    return seen;
  }

  it.each([false, true])('options given after `check` reach it (positional root options: %s)', (positionalRoot) => {
    const opts = parsedCheckOptions(['machines', 'check', '--machines', 'm.json', '--json', '--no-color', '--timeout', '3s', '--hosts', 'a,b'], positionalRoot);
    expect(opts).toMatchObject({ machines: 'm.json', json: true, color: false, timeout: 3000, hosts: ['a', 'b'] });
  });

  it('options given before `check` count too, and defaults do not override given values', () => {
    const opts = parsedCheckOptions(['machines', '--no-color', '--machines', 'm.json', 'check'], false);
    expect(opts).toMatchObject({ machines: 'm.json', color: false, timeout: 10_000 });
  });
});
