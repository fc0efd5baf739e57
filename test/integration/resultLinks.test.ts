import { existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { startPrivateStore, type PrivateStore } from '../support/privateStore.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, ROOT } from './buildSupport.js';

/**
 * `result` links as nix-build makes them, each a GC root registered through
 * the store. offload runs against a private local store (its own /nix in a
 * mount namespace), so `nix-store --gc` here never touches the machine's.
 */
describe.runIf(integrationPrereqs())('result links and GC roots', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let store: PrivateStore;
  let work: string;

  beforeAll(async () => {
    cluster = await startTempCluster('links');
    store = await startPrivateStore('links-store');
    work = mkdtempSync(join(tmpdir(), 'offload-links-work-'));
  });
  afterAll(async () => {
    await store?.dispose();
    await cluster?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** In the private store: `top` (outputs out, dev; out refers to `dep`) and `other`. */
  async function instantiate(): Promise<{ top: string; other: string }> {
    const nonce = randomBytes(6).toString('hex');
    const file = join(work, `gc-${nonce}.nix`);
    writeFileSync(
      file,
      `let
        sys = builtins.currentSystem;
        dep = derivation { name = "gc-dep"; system = sys; builder = "/bin/sh"; nonce = "${nonce}"; args = [ "-c" "echo dep > $out" ]; };
      in {
        top = derivation { name = "gc-top"; system = sys; builder = "/bin/sh"; nonce = "${nonce}"; outputs = [ "out" "dev" ];
          args = [ "-c" "echo \${dep} > $out; echo dev > $dev" ]; };
        other = derivation { name = "gc-other"; system = sys; builder = "/bin/sh"; nonce = "${nonce}"; args = [ "-c" "echo other > $out" ]; };
      }`,
    );
    const r = await store.run(['nix-instantiate', file, '-A', 'top', '-A', 'other'], { env: NIX_ENV });
    expect(r.code, r.stderr).toBe(0);
    const [top, other] = r.stdout.trim().split('\n');
    return { top: top!, other: other! };
  }

  const offload = (args: string[], cwd: string, env = NIX_ENV) =>
    store.run([process.execPath, join(ROOT, 'bin', 'offload.js'), 'build', ...args, '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'], { env, cwd });
  const valid = async (path: string) => (await store.run(['nix-store', '--check-validity', path], { env: NIX_ENV })).code === 0;
  const gc = async (env = NIX_ENV) => expect((await store.run(['nix-store', '--gc'], { env })).code).toBe(0);
  const outputOf = async (drv: string, output: string) => {
    const r = await store.run(['nix-store', '--query', '--outputs', drv], { env: NIX_ENV });
    return r.stdout.trim().split('\n').find((p) => (output === 'out' ? !/-dev$/.test(p) : p.endsWith(`-${output}`)))!;
  };

  it('links result and result-2 as nix-build names them, and nix-store --gc keeps the outputs and their closure', async () => {
    const { top, other } = await instantiate();
    const cwd = join(work, 'first');
    mkdirSync(cwd);
    const r = await offload([top, other, '--json'], cwd);
    expect(r.code, r.stderr).toBe(0);
    const [topOut, topDev, otherOut] = [await outputOf(top, 'out'), await outputOf(top, 'dev'), await outputOf(other, 'out')];
    const json = JSON.parse(r.stdout) as { outLinks: Array<{ link: string; drvPath: string; output: string; path: string }> };
    expect(json.outLinks).toEqual([
      { link: join(cwd, 'result'), drvPath: top, output: 'out', path: topOut },
      { link: join(cwd, 'result-2'), drvPath: other, output: 'out', path: otherOut },
    ]);
    expect(readlinkSync(join(cwd, 'result'))).toBe(topOut);
    expect(readlinkSync(join(cwd, 'result-2'))).toBe(otherOut);
    const roots = await store.run(['nix-store', '--gc', '--print-roots'], { env: NIX_ENV });
    expect(roots.stdout).toContain(`${join(cwd, 'result')} -> ${topOut}`);
    const dep = (await store.run(['nix-store', '--query', '--references', topOut], { env: NIX_ENV })).stdout.trim();
    expect(dep).toMatch(/-gc-dep$/);

    await gc();
    expect(await valid(topOut)).toBe(true);
    expect(await valid(dep)).toBe(true);
    expect(await valid(otherOut)).toBe(true);
    // Like nix-build, a plain .drv gets a link for `out` only: `dev` came back but is no root.
    expect(await valid(topDev)).toBe(false);

    // The links were what kept them: without them the next GC takes everything.
    rmSync(join(cwd, 'result'));
    await gc();
    expect(await valid(topOut)).toBe(false);
    expect(await valid(dep)).toBe(false);
    expect(await valid(otherOut)).toBe(true);
  });

  it('--out-link / -o names the links, --no-out-link makes none, and a file in the way is refused before building', async () => {
    const { top, other } = await instantiate();
    const cwd = join(work, 'second');
    mkdirSync(cwd);
    const named = await offload([top, other, '-o', 'here'], cwd);
    expect(named.code, named.stderr).toBe(0);
    expect(readlinkSync(join(cwd, 'here'))).toBe(await outputOf(top, 'out'));
    expect(readlinkSync(join(cwd, 'here-2'))).toBe(await outputOf(other, 'out'));
    expect(named.stdout.trim().split('\n')).toContain(await outputOf(top, 'out'));

    const none = await offload([top, '--no-out-link'], cwd);
    expect(none.code, none.stderr).toBe(0);
    expect(existsSync(join(cwd, 'result'))).toBe(false);

    const fresh = await instantiate();
    writeFileSync(join(cwd, 'result'), 'my notes\n');
    const refused = await offload([fresh.top], cwd);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`cannot create the result link ${join(cwd, 'result')}: it exists and is not a link into /nix/store`);
    expect(await valid(await outputOf(fresh.top, 'out'))).toBe(false);
  });

  it('with a nix-daemon store the daemon registers the root (the store, not offload, writes gcroots/auto)', async () => {
    const daemonEnv = { ...NIX_ENV, NIX_REMOTE: 'daemon' };
    store.start(['nix-daemon'], NIX_ENV);
    const socket = join(store.nixDir, 'var/nix/daemon-socket/socket');
    for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(existsSync(socket)).toBe(true);
    const { top } = await instantiate();
    const cwd = join(work, 'daemon');
    mkdirSync(cwd);
    const r = await offload([top, '--json'], cwd, daemonEnv);
    expect(r.code, r.stderr).toBe(0);
    const topOut = await outputOf(top, 'out');
    expect(readlinkSync(join(cwd, 'result'))).toBe(topOut);
    const auto = join(store.nixDir, 'var/nix/gcroots/auto');
    expect(readdirSync(auto).map((name) => readlinkSync(join(auto, name)))).toContain(join(cwd, 'result'));
    await gc(daemonEnv);
    expect(await valid(topOut)).toBe(true);
  });
});
