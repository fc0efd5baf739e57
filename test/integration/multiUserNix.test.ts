import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { startDaemonStore, type DaemonStore } from '../support/daemonStore.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { ROOT } from './buildSupport.js';

/**
 * offload run by a normal user of a multi-user Nix: the local store is a
 * nix-daemon (in a private mount namespace with its own store), the user is
 * `nobody`, and whether the daemon trusts the user or the builders' signing
 * keys decides whether what the builders build can be copied back.
 */
describe.runIf(integrationPrereqs())('a normal user of a multi-user Nix', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let nix: DaemonStore;
  let signerKey: string;
  let hookedKey: string;
  let guardedDaemon: ChildProcess | undefined;

  beforeAll(async () => {
    [cluster, nix] = await Promise.all([
      startTempCluster('multiuser', [
        { name: 'signer', maxJobs: 2, signingKeyName: 'signer-1' },
        { name: 'plain', maxJobs: 2 },
        { name: 'hooked', maxJobs: 2, signingKeyName: 'hooked-1', signWith: 'post-build-hook' },
        // Its sessions run as nobody through a nix-daemon of its own that trusts only root: a remote builder's user that is not in trusted-users.
        { name: 'guarded', maxJobs: 2, forceCommand: GUARDED_SESSION },
      ]),
      startDaemonStore('multiuser-store'),
    ]);
    signerKey = cluster.builder('signer').signingPublicKey!;
    hookedKey = cluster.builder('hooked').signingPublicKey!;
    guardedDaemon = await startBuilderDaemon(cluster, 'guarded');
  });
  afterAll(async () => {
    guardedDaemon?.kill('SIGTERM');
    await nix?.dispose();
    await cluster?.dispose();
  });

  /** As the user, through the daemon: `top` (its output refers to `dep`'s), both fresh. */
  async function instantiate(): Promise<{ drv: string; out: string; dep: string; file: string }> {
    const nonce = randomBytes(6).toString('hex');
    const dir = nix.userFolder('nix');
    const file = join(dir, 'top.nix');
    writeFileSync(
      file,
      `let
        sys = builtins.currentSystem;
        dep = derivation { name = "mu-dep"; system = sys; builder = "/bin/sh"; nonce = "${nonce}"; args = [ "-c" "echo dep > $out" ]; };
      in derivation { name = "mu-top"; system = sys; builder = "/bin/sh"; nonce = "${nonce}"; args = [ "-c" "echo \${dep} > $out" ]; }`,
      { mode: 0o644 },
    );
    const r = await nix.asUser(['nix-instantiate', file]);
    expect(r.code, r.stderr).toBe(0);
    const drv = r.stdout.trim();
    const out = (await nix.asUser(['nix-store', '--query', '--outputs', drv])).stdout.trim();
    const depDrv = (await nix.asUser(['nix-store', '--query', '--references', drv])).stdout.trim().split('\n').find((p) => p.endsWith('-mu-dep.drv'))!;
    const dep = (await nix.asUser(['nix-store', '--query', '--outputs', depDrv])).stdout.trim();
    return { drv, out, dep, file };
  }

  function offload(args: string[], builders: readonly string[], cwd: string) {
    const { machinesFile, sshConfigFile } = nix.userMachines(cluster, builders);
    return nix.asUser([process.execPath, join(ROOT, 'bin', 'offload.js'), ...args, '--machines', machinesFile, '--ssh-config', sshConfigFile], { cwd });
  }

  const validLocally = async (path: string) => (await nix.asUser(['nix-store', '--check-validity', path])).code === 0;
  const sigsOf = async (path: string) => {
    const r = await nix.asUser(['nix', '--extra-experimental-features', 'nix-command', 'path-info', '--sigs', path]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  };
  const validOn = async (builder: string, path: string) => (await cluster.runOnBuilder(builder, ['nix-store', '--check-validity', path])).code === 0;

  it('a user in trusted-users builds on builders that sign nothing', async () => {
    await nix.startDaemon({ trustedUsers: ['root', nix.user.name], trustedPublicKeys: [] });
    const { drv, out, dep } = await instantiate();
    const r = await offload(['build', drv, '--max-jobs', '0'], ['plain'], nix.userFolder('trusted'));
    expect(r.code, r.stderr).toBe(0);
    expect(await validOn('plain', out)).toBe(true);
    expect(await validLocally(out)).toBe(true);
    expect(await validLocally(dep)).toBe(true);
  });

  it('an untrusted user with builders that sign nothing is refused before anything is built, with both fixes named', async () => {
    await nix.startDaemon({ trustedUsers: ['root'], trustedPublicKeys: [signerKey] });
    const { drv, out, dep } = await instantiate();
    const r = await offload(['build', drv, '--max-jobs', '0'], ['plain'], nix.userFolder('refused'));
    expect(r.code, r.stderr).toBe(1);
    const message = r.stderr.replace(/\s+/g, ' ');
    expect(message).toContain('the local store would refuse what the builders build, so nothing was built');
    expect(message).toContain('plain signs nothing');
    expect(message).toContain('add the user to trusted-users');
    expect(message).toContain("secret-key-files in each builder's nix.conf");
    expect(message).toContain('trusted-public-keys');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    for (const path of [out, dep]) {
      expect(await validOn('plain', path)).toBe(false);
      expect(await validLocally(path)).toBe(false);
    }
  });

  it("an untrusted user with a builder whose key the daemon trusts gets the outputs, with the builder's signature", async () => {
    await nix.startDaemon({ trustedUsers: ['root'], trustedPublicKeys: [signerKey] });
    const { drv, out, dep } = await instantiate();
    const r = await offload(['build', drv, '--max-jobs', '0'], ['signer'], nix.userFolder('signed'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('signer signs with a key it trusts');
    expect(await validLocally(out)).toBe(true);
    expect(await validLocally(dep)).toBe(true);
    expect(await sigsOf(out)).toMatch(/\ssigner-1:/);
    expect(await sigsOf(dep)).toMatch(/\ssigner-1:/);
  });

  it('an untrusted user with a builder that signs after the build (post-build-hook) with a trusted key is let through and gets the signed outputs', async () => {
    await nix.startDaemon({ trustedUsers: ['root'], trustedPublicKeys: [hookedKey] });
    const { drv, out, dep } = await instantiate();
    const r = await offload(['build', drv, '--max-jobs', '0'], ['hooked'], nix.userFolder('hooked'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.replace(/\s+/g, ' ')).toContain(
      'cannot tell whether the local store will take what hooked builds: it has no secret-key-files, but its post-build-hook (/etc/nix/sign-after-build) may sign after each build',
    );
    expect(await sigsOf(out)).toMatch(/\shooked-1:/);
    expect(await sigsOf(dep)).toMatch(/\shooked-1:/);
  });

  it("an untrusted user's local builds go through the daemon, from the .drv files in its store", async () => {
    await nix.startDaemon({ trustedUsers: ['root'], trustedPublicKeys: [] });
    const { drv, out, dep } = await instantiate();
    const r = await offload(['build', drv, '--max-jobs', '1'], [], nix.userFolder('local'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('local: mu-top built');
    expect(await validLocally(out)).toBe(true);
    expect(await validLocally(dep)).toBe(true);
  });

  it('outputs a builder already holds unsigned are refused by the daemon once and fail at once: not copied again, not rebuilt', async () => {
    await nix.startDaemon({ trustedUsers: ['root'], trustedPublicKeys: [signerKey] });
    const { drv, out, file } = await instantiate();
    // Built there before the builder signed anything: valid on it, with no signature.
    const early = await cluster.runOnBuilder('signer', ['nix-build', file, '--no-out-link', '--option', 'secret-key-files', '']);
    expect(early.code, early.stderr).toBe(0);
    expect(early.stdout.trim()).toBe(out);
    const r = await offload(['build', drv, '--max-jobs', '0'], ['signer'], nix.userFolder('held'));
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`copying the outputs of ${drv} from signer failed: the local store refused it for good (not retried)`);
    expect(r.stderr).toMatch(/cannot add path '[^']+' because it lacks a valid signature/);
    // One copy, refused once: no second attempt, no build in its place.
    expect(r.stderr.match(/copying mu-top/g)).toHaveLength(1);
    expect(r.stderr).toContain('caches: mu-top could not be copied from signer: the local store refused it for good');
    expect(r.stderr).not.toContain('building it instead');
    expect(r.stderr).not.toContain('started mu-top');
    expect(await validLocally(out)).toBe(false);
  });

  it("machines check reports each builder's signing key, whether the daemon trusts it, and what the daemon takes from the user", async () => {
    await nix.startDaemon({ trustedUsers: ['root'], trustedPublicKeys: [signerKey] });
    const r = await offload(['machines', 'check', '--json'], ['signer', 'plain', 'hooked'], nix.userFolder('check'));
    const report = JSON.parse(r.stdout) as {
      local: { user: string; unsignedImports: { accepted: boolean; reason?: string }; trustedPublicKeys: string[] };
      machines: Array<{
        hostName: string;
        verdict: string;
        signingKeys: Array<{ publicKey?: string; trustedLocally?: boolean }>;
        postBuildHook: string | null;
        unsignedImports: { accepted: boolean };
        findings: Array<{ severity: string; message: string }>;
      }>;
    };
    expect(report.local.user).toBe(nix.user.name);
    expect(report.local.unsignedImports.accepted).toBe(false);
    expect(report.local.unsignedImports.reason).toContain('lacks a valid signature');
    expect(report.local.trustedPublicKeys).toEqual([signerKey]);
    const byName = new Map(report.machines.map((m) => [m.hostName, m]));
    expect(byName.get('signer')!.signingKeys).toEqual([expect.objectContaining({ publicKey: signerKey, trustedLocally: true })]);
    expect(byName.get('signer')!.verdict).not.toBe('unusable');
    expect(byName.get('plain')!.signingKeys).toEqual([]);
    expect(byName.get('plain')!.verdict).toBe('unusable');
    expect(byName.get('plain')!.postBuildHook).toBeNull();
    // A hook may sign with any key: a warning, not a refusal.
    const hooked = byName.get('hooked')!;
    expect(hooked.signingKeys).toEqual([]);
    expect(hooked.postBuildHook).toBe('/etc/nix/sign-after-build');
    expect(hooked.verdict).toBe('warning');
    expect(hooked.findings).toContainEqual(expect.objectContaining({ severity: 'warning', message: expect.stringContaining('its post-build-hook (/etc/nix/sign-after-build) may sign after each build') }));
    // The builders' ssh user is root there: their stores take unsigned paths from it, as Nix requires.
    for (const m of report.machines) expect(m.unsignedImports.accepted).toBe(true);
    expect(r.code).toBe(1);
  });
  it("machines check says a builder whose store refuses unsigned paths from the ssh user is unusable, as Nix requires of a remote builder's user; a build sent there fails at once", async () => {
    await nix.startDaemon({ trustedUsers: ['root', nix.user.name], trustedPublicKeys: [] });
    const r = await offload(['machines', 'check', '--json'], ['guarded', 'plain'], nix.userFolder('guarded'));
    const report = JSON.parse(r.stdout) as {
      machines: Array<{ hostName: string; verdict: string; unsignedImports: { accepted: boolean; reason?: string } | null; findings: Array<{ severity: string; message: string }> }>;
    };
    const byName = new Map(report.machines.map((m) => [m.hostName, m]));
    const guarded = byName.get('guarded')!;
    expect(guarded.unsignedImports).toMatchObject({ accepted: false, reason: expect.stringContaining('lacks a valid signature') });
    expect(guarded.verdict).toBe('unusable');
    expect(guarded.findings).toContainEqual(
      expect.objectContaining({ severity: 'unusable', message: expect.stringMatching(/^its store refuses unsigned paths from the ssh user .*add .* to trusted-users in its nix\.conf, as Nix requires of a remote builder's user$/) }),
    );
    expect(byName.get('plain')!.unsignedImports).toEqual({ accepted: true });
    expect(r.code).toBe(1);
    // A build sent there anyway fails at once with the fix, not retried.
    const { drv } = await instantiate();
    const b = await offload(['build', drv, '--max-jobs', '0'], ['guarded'], nix.userFolder('guarded-build'));
    expect(b.code, b.stderr).toBe(1);
    expect(b.stderr).toContain(
      "guarded: mu-dep failed: the store on guarded refused it for good (not retried): you are not privileged to build input-addressed derivations; to fix this, add the user to trusted-users in that store's nix.conf",
    );
    expect(b.stderr.match(/guarded: started mu-dep/g)).toHaveLength(1);
  });
});

/** Each ssh session of the guarded builder: the command it asked for, as nobody, through the builder's nix-daemon. */
const GUARDED_SESSION =
  'exec setpriv --reuid=65534 --regid=65534 --clear-groups env NIX_REMOTE=daemon HOME=/nix/var/nobody-home /bin/sh -c "$SSH_ORIGINAL_COMMAND"';

/** A nix-daemon in the builder's namespace (its store, its nix.conf: trusted-users is Nix's default, root). */
async function startBuilderDaemon(cluster: TestCluster, name: string): Promise<ChildProcess> {
  const home = await cluster.runOnBuilder(name, ['sh', '-c', 'mkdir -p /nix/var/nobody-home && chown 65534:65534 /nix/var/nobody-home']);
  expect(home.code, home.stderr).toBe(0);
  const env: NodeJS.ProcessEnv = { ...process.env, NIX_REMOTE: 'local' };
  for (const variable of ['NIX_CONFIG', 'NIX_CONF_DIR', 'NIX_USER_CONF_FILES']) delete env[variable];
  const daemon = spawn('nsenter', ['-t', String(cluster.builder(name).namespacePid), '-m', '--', 'nix-daemon'], { env, stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    if ((await cluster.runOnBuilder(name, ['test', '-S', '/nix/var/nix/daemon-socket/socket'])).code === 0) return daemon;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  daemon.kill('SIGKILL');
  throw new Error(`nix-daemon on ${name} made no socket`);
}
