import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, parseJson, ROOT, type CliResult } from './buildSupport.js';

const exec = promisify(execFile);
const FILE = join(ROOT, 'fixtures', 'installables', 'default.nix');
const FLAKE = join(ROOT, 'fixtures', 'installables', 'flake');

/** `offload ARGS` run from `cwd`, as a user in that folder runs it. */
function offloadIn(cwd: string, args: string[], env: NodeJS.ProcessEnv = NIX_ENV): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'offload.js'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A command's exit code and output, failing or not. */
async function attempt(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await exec(command, args, { env: NIX_ENV, ...options });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const nonce = () => randomBytes(6).toString('hex');
const isValid = async (path: string) => (await attempt('nix-store', ['--check-validity', path])).code === 0;
const outputsOf = async (drv: string) => (await exec('nix-store', ['--query', '--outputs', drv], { env: NIX_ENV })).stdout.trim().split('\n');

describe.runIf(integrationPrereqs())('offload build and plan take what Nix users type', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let remote: string[];
  const dir = mkdtempSync(join(tmpdir(), 'offload-installables-'));

  beforeAll(async () => {
    cluster = await startTempCluster('installables');
    // No local slots: everything is built on the builders and comes back, so "came back" means something.
    remote = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--no-history'];
  });
  afterAll(async () => {
    await cluster?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('FILE.nix -A ATTR --arg --argstr: Nix evaluates it, offload builds what nix-instantiate gives', async () => {
    const n = nonce();
    const nixArgs = ['-A', 'greet', '--arg', 'copies', '2', '--argstr', 'greeting', 'hi', '--argstr', 'nonce', n];
    const temp = mkdtempSync(join(dir, 'tmp-'));
    const r = await offloadIn(dir, ['build', FILE, ...nixArgs, ...remote, '--json'], { ...NIX_ENV, TMPDIR: temp });
    expect(r.code, r.stderr).toBe(0);
    // nix-instantiate's GC roots lived in a folder of this process, gone with it.
    expect(readdirSync(temp).filter((name) => name.startsWith('offload-eval-'))).toEqual([]);
    const json = parseJson(r);
    const [expected] = (await exec('nix-instantiate', [FILE, ...nixArgs], { env: NIX_ENV })).stdout.trim().split('\n');
    expect(Object.keys(json.outputs)).toEqual([expected]);
    // --arg copies 2 is an expression: two leaves under the top.
    expect(json.jobs.map((j) => j.name).sort()).toEqual(['greet-hi', 'leaf-1', 'leaf-2']);
    const out = json.outputs[expected!]!['out']!;
    expect(readFileSync(out, 'utf8')).toMatch(/^greet-hi /);
  });

  it('no argument means ./default.nix (like nix-build); with none there, plan is a usage error (exit 2)', async () => {
    const here = join(ROOT, 'fixtures', 'installables');
    const r = await offloadIn(here, ['plan', '-A', 'split', '--argstr', 'nonce', nonce(), '--json', '--machines', cluster.machinesFile]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { jobs: Array<{ name: string }> }).jobs.map((j) => j.name)).toEqual(['split']);

    const empty = mkdtempSync(join(dir, 'empty-'));
    for (const command of ['plan', 'build']) {
      const none = await offloadIn(empty, [command, '--machines', cluster.machinesFile]);
      expect(none.code).toBe(2);
      expect(none.stderr).toMatch(/^offload: nothing to build: no derivation was given and there is no default\.nix in /);
      expect(none.stdout).toBe('');
    }
  });

  it('an evaluation error is shown as Nix wrote it, with Nix’s exit code, and nothing is dispatched', async () => {
    // Builders that cannot be reached: had offload tried, it would say so and exit 4.
    const nowhere = join(dir, 'nowhere.machines');
    writeFileSync(nowhere, 'ssh://nowhere.invalid x86_64-linux - 1 1\n');
    const roots = mkdtempSync(join(dir, 'roots-'));
    const nix = await attempt('nix-instantiate', ['--add-root', join(roots, 'r'), FILE, '-A', 'broken']);
    expect(nix.code).not.toBe(0);
    const r = await offloadIn(dir, ['build', FILE, '-A', 'broken', '--machines', nowhere, '--max-jobs', '0']);
    expect(r.code).toBe(nix.code);
    expect(r.stderr.startsWith(nix.stderr)).toBe(true);
    expect(r.stderr).toContain('this attribute is broken on purpose');
    expect(r.stderr.slice(nix.stderr.length)).toMatch(/^offload: evaluating .* -A broken failed \(nix-instantiate exited with 1; its message is above\); nothing was built\.\n$/);
    expect(r.stdout).toBe('');

    const flake = await attempt('nix', ['--extra-experimental-features', 'nix-command flakes', 'eval', `path:${FLAKE}#nope`]);
    const viaOffload = await offloadIn(dir, ['plan', `path:${FLAKE}#nope`, '--machines', nowhere]);
    expect(viaOffload.code).toBe(flake.code);
    expect(viaOffload.stderr).toContain("does not provide attribute 'packages.x86_64-linux.nope'");
  });

  describe('a path flake with no inputs', () => {
    let flake: string;
    let n: string;
    beforeAll(() => {
      flake = mkdtempSync(join(dir, 'flake-'));
      cpSync(FLAKE, flake, { recursive: true });
      n = nonce();
      writeFileSync(join(flake, 'nonce'), n);
    });

    it('.#hello from the flake’s folder builds its package (experimental features on for that call only)', async () => {
      const nixConf = readFileSync(join(NIX_ENV.NIX_CONF_DIR!, 'nix.conf'), 'utf8');
      expect(nixConf).not.toMatch(/experimental-features/);
      const r = await offloadIn(flake, ['build', '.#hello', ...remote, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const [[, outputs]] = Object.entries(parseJson(r).outputs) as [[string, Record<string, string>]];
      expect(readFileSync(outputs['out']!, 'utf8')).toBe(`flake-hello ${n}\n`);
    });

    it('path:/dir#split wants the default output; ^dev only dev, which alone comes back', async () => {
      const plain = parseJson(await offloadIn(dir, ['plan', `path:${flake}#split`, ...remote, '--json']));
      expect(plain.jobs.map((j) => j.name)).toEqual(['flake-split']);

      const r = await offloadIn(dir, ['build', `path:${flake}#split^dev`, ...remote, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const [[drv, outputs]] = Object.entries(parseJson(r).outputs) as [[string, Record<string, string>]];
      expect(Object.keys(outputs)).toEqual(['dev']);
      expect(readFileSync(outputs['dev']!, 'utf8')).toBe(`dev ${n}\n`);
      const [dev, out] = (await outputsOf(drv)).sort((a, b) => Number(a.endsWith('-flake-split')) - Number(b.endsWith('-flake-split')));
      expect(dev).toBe(outputs['dev']);
      expect(await isValid(out!)).toBe(false);
    });

    it('nixpkgs#hello resolves through the flake registry, as Nix resolves it', async () => {
      const registry = join(dir, 'registry.json');
      writeFileSync(registry, JSON.stringify({ version: 2, flakes: [{ from: { type: 'indirect', id: 'nixpkgs' }, to: { type: 'path', path: flake } }] }));
      const env = { ...NIX_ENV, NIX_CONFIG: `flake-registry = ${registry}` };
      const viaRegistry = await offloadIn(dir, ['plan', 'nixpkgs#hello', '--machines', cluster.machinesFile, '--json'], env);
      expect(viaRegistry.code, viaRegistry.stderr).toBe(0);
      const direct = await offloadIn(dir, ['plan', `path:${flake}#hello`, '--machines', cluster.machinesFile, '--json']);
      const drvs = (r: CliResult) => (JSON.parse(r.stdout) as { jobs: Array<{ drvPath: string }>; alreadyBuilt: string[] });
      expect([...drvs(viaRegistry).jobs.map((j) => j.drvPath), ...drvs(viaRegistry).alreadyBuilt]).toEqual([...drvs(direct).jobs.map((j) => j.drvPath), ...drvs(direct).alreadyBuilt]);
    });
  });

  it('DRV^dev builds the derivation once and brings back, prints and reports only dev', async () => {
    const [drv] = (await exec('nix-instantiate', [FILE, '-A', 'split', '--argstr', 'nonce', nonce()], { env: NIX_ENV })).stdout.trim().split('\n');
    const temp = mkdtempSync(join(dir, 'tmp-'));
    const roots: string[] = [];
    const watching = setInterval(() => roots.push(...readdirSync(temp).filter((name) => name.startsWith('offload-eval-'))), 5);
    const r = await offloadIn(dir, ['build', `${drv}^dev`, ...remote, '--json'], { ...NIX_ENV, TMPDIR: temp }).finally(() => clearInterval(watching));
    expect(r.code, r.stderr).toBe(0);
    // Nothing is evaluated, so no folder for evaluation roots is made (nor removed at exit).
    expect(roots).toEqual([]);
    const json = parseJson(r);
    const [out, dev] = (await outputsOf(drv!)).sort((a, b) => Number(a.endsWith('-dev')) - Number(b.endsWith('-dev')));
    expect(json.outputs).toEqual({ [drv!]: { dev } });
    expect(json.jobs.map((j) => j.status)).toEqual(['built']);
    expect(await isValid(dev!)).toBe(true);
    expect(await isValid(out!)).toBe(false);

    const text = await offloadIn(dir, ['build', `${drv}^dev`, ...remote]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toBe(`${dev}\n`);
  });

  it('a symlink to a .drv (./result.drv) builds that derivation', async () => {
    const here = mkdtempSync(join(dir, 'link-'));
    await exec('nix-instantiate', ['--add-root', join(here, 'result.drv'), FILE, '-A', 'greet', '--argstr', 'nonce', nonce()], { env: NIX_ENV });
    const r = await offloadIn(here, ['build', './result.drv', ...remote]);
    expect(r.code, r.stderr).toBe(0);
    const [drv] = (await exec('readlink', [join(here, 'result.drv')])).stdout.trim().split('\n');
    expect(r.stdout).toBe(`${(await outputsOf(drv!))[0]}\n`);
  });

  it('an output path is built through its derivation; ./result to a valid one builds nothing', async () => {
    const [drv] = (await exec('nix-instantiate', [FILE, '-A', 'greet', '--argstr', 'nonce', nonce()], { env: NIX_ENV })).stdout.trim().split('\n');
    const [out] = await outputsOf(drv!);
    expect(await isValid(out!)).toBe(false);
    const r = await offloadIn(dir, ['build', out!, ...remote, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(parseJson(r).outputs).toEqual({ [drv!]: { out } });
    expect(await isValid(out!)).toBe(true);

    const here = mkdtempSync(join(dir, 'result-'));
    symlinkSync(out!, join(here, 'result'));
    const again = await offloadIn(here, ['build', './result', ...remote, '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(parseJson(again)).toMatchObject({ outputs: { [drv!]: { out } }, jobs: [] });

    const unknown = '/nix/store/00000000000000000000000000000000-no-deriver';
    const nix = await attempt('nix', ['--extra-experimental-features', 'nix-command', 'path-info', '--derivation', unknown]);
    const none = await offloadIn(dir, ['build', unknown, ...remote]);
    expect(none.code).toBe(nix.code);
    expect(none.stderr).toContain('does not have a known deriver');
  });

  it('-A on something that is not a Nix file, and outputs of a non-derivation, are usage errors', async () => {
    const a = await offloadIn(dir, ['plan', `path:${FLAKE}#hello`, '-A', 'x', '--machines', cluster.machinesFile]);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/-A apply to Nix expression files/);
    const b = await offloadIn(dir, ['plan', `${FILE}^out`, '--machines', cluster.machinesFile]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/outputs can only be chosen of a derivation/);
  });
});
