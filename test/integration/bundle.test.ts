import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import stringWidth from 'string-width';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SELF_WRAPPED_HEAD } from '../../src/launch/cachedScripts.js';
import { ROOT } from './buildSupport.js';

/**
 * The bundle as users get it (scripts/bundle.mjs, run by the global setup):
 * its code caches are used by a plain `node`, also from the files `npm pack`
 * ships, copied elsewhere and read-only as in a Nix store; what it loads on
 * demand still loads; --debug still maps stack traces to src/.
 */
const run = promisify(execFile);
const plainNode = { ...process.env, NODE_OPTIONS: '' };

let packed: string;

beforeAll(async () => {
  // The files `npm pack` would put in the tarball (its own list, so a file left out of package.json "files" fails here).
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, env: plainNode });
  const [{ files }] = JSON.parse(stdout) as [{ files: Array<{ path: string }> }];
  packed = join(mkdtempSync(join(tmpdir(), 'offload-packed-')), 'offload');
  for (const { path } of files) {
    mkdirSync(dirname(join(packed, path)), { recursive: true });
    copyFileSync(join(ROOT, path), join(packed, path));
  }
  symlinkSync(join(ROOT, 'node_modules'), join(packed, 'node_modules'));
  readOnly(packed);
});

afterAll(() => {
  if (!packed) return;
  writable(packed);
  rmSync(dirname(packed), { recursive: true, force: true });
});

/** How each of the bundle's files used its code cache when a plain `node` loaded it, ssh2 included. */
async function cacheUse(root: string): Promise<Record<string, string>> {
  const script = `
    const { CachedScripts } = require(${JSON.stringify(join(root, 'dist', 'launch.cjs'))});
    const scripts = new CachedScripts();
    scripts.require(${JSON.stringify(join(root, 'dist', 'cli', 'main.cjs'))});
    scripts.require(${JSON.stringify(join(root, 'dist', 'vendor', 'ssh2.cjs'))});
    process.stdout.write(JSON.stringify(Object.fromEntries([...scripts.cacheUse()].map(([f, u]) => [f.slice(${root.length + 1}), u]))));`;
  const { stdout } = await run(process.execPath, ['-e', script], { env: plainNode });
  return JSON.parse(stdout) as Record<string, string>;
}

describe('the bundle', () => {
  it('compiles from its code caches in a plain node, in the checkout and in a read-only copy of what npm pack ships', async () => {
    const all = { 'dist/cli/main.cjs': 'used', 'dist/vendor/ssh2.cjs': 'used' };
    // Wrapped in their module function by the bundler, as the launcher expects, so it compiles them as read.
    for (const file of Object.keys(all)) expect(readFileSync(join(ROOT, file), 'latin1').startsWith(SELF_WRAPPED_HEAD)).toBe(true);
    expect(await cacheUse(ROOT)).toEqual(all);
    expect(await cacheUse(packed)).toEqual(all);
  });

  it('runs from the packed copy: version, help, a table of display widths, a SQLite history, and ssh2 with its native cipher loaded on demand', async () => {
    const bin = join(packed, 'bin', 'offload.js');
    const before = listing(packed);
    expect((await run(process.execPath, [bin, '--version'], { env: plainNode })).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect((await run(process.execPath, [bin, 'build', '--help'], { env: plainNode })).stdout).toContain('Usage: offload build');
    const ssh2 = `
      const { CachedScripts } = require(${JSON.stringify(join(packed, 'dist', 'launch.cjs'))});
      const scripts = new CachedScripts();
      const ssh2 = scripts.require(${JSON.stringify(join(packed, 'dist', 'vendor', 'ssh2.cjs'))});
      const binding = Object.keys(require.cache).some((f) => f.endsWith('/sshcrypto.node'));
      process.stdout.write(typeof ssh2.Client + ' ' + binding);`;
    expect((await run(process.execPath, ['-e', ssh2], { env: plainNode })).stdout).toBe('function true');
    // Display widths (string-width, whose Intl.Segmenter the bundle builds on first use): a wide name takes two columns a letter.
    const machines = join(dirname(packed), 'machines.json');
    const machine = (hostName: string, feature: string) => ({ hostName, systems: ['x86_64-linux'], supportedFeatures: [feature], maxJobs: 1 });
    writeFileSync(machines, JSON.stringify([machine('wide', '日本語'), machine('narrow', 'abcdef')]));
    const table = (await run(process.execPath, [bin, 'machines', '--machines', machines, '--max-jobs', '0'], { env: { ...plainNode, COLUMNS: '200' } })).stdout;
    const jobsColumn = (host: string) => {
      const line = table.split('\n').find((l) => l.startsWith(`${host} `))!;
      return stringWidth(line.slice(0, line.search(/ 1 +1 /)));
    };
    expect(jobsColumn('wide')).toBe(jobsColumn('narrow'));
    // SQLite (better-sqlite3's JavaScript is in the bundle, its addon in node_modules): a history file is made and read.
    const historyFile = join(dirname(packed), 'history.sqlite');
    const history = (await run(process.execPath, [bin, 'history', '--history-file', historyFile, '--json'], { env: plainNode })).stdout;
    expect(JSON.parse(history)).toMatchObject({ path: historyFile, estimates: [], hosts: [] });
    // Nothing was written into the package (root could have, read-only or not).
    expect(listing(packed)).toEqual(before);
  });

  it("postinstall writes the caches for the Node that installs, and does nothing before there is a dist/", async () => {
    const installed = join(mkdtempSync(join(tmpdir(), 'offload-installed-')), 'offload');
    try {
      cpSync(packed, installed, { recursive: true, filter: (path) => !path.endsWith('.codecache') });
      writable(installed);
      expect(await cacheUse(installed)).toEqual({ 'dist/cli/main.cjs': 'absent', 'dist/vendor/ssh2.cjs': 'absent' });
      await run(process.execPath, [join(installed, 'bin', 'write-code-caches.js'), '--if-built'], { env: plainNode });
      expect(await cacheUse(installed)).toEqual({ 'dist/cli/main.cjs': 'used', 'dist/vendor/ssh2.cjs': 'used' });
      rmSync(join(installed, 'dist'), { recursive: true });
      const early = await run(process.execPath, [join(installed, 'bin', 'write-code-caches.js'), '--if-built'], { env: plainNode });
      expect(early.stderr).toBe('');
    } finally {
      rmSync(dirname(installed), { recursive: true, force: true });
    }
  });

  it('with --debug, loads without the cache so stack traces name src/ lines', async () => {
    const args = [join(ROOT, 'bin', 'offload.js'), 'build', '/nonexistent.drv', '--machines', join(tmpdir(), 'offload-no-such-machines.json'), '--debug'];
    const failed = await run(process.execPath, args, { env: plainNode }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed?.code).toBe(2);
    expect(failed?.stderr).toMatch(/\n\s+at .*src\/config\/loadMachines\.ts:\d+:\d+/);
  });
});

function listing(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((p) => !p.startsWith('node_modules'))
    .map((p) => `${p} ${statSync(join(dir, p)).mtimeMs}`)
    .sort();
}

function readOnly(dir: string): void {
  for (const p of readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((p) => !p.startsWith('node_modules'))) {
    const path = join(dir, p);
    chmodSync(path, statSync(path).isDirectory() ? 0o555 : 0o444);
  }
  chmodSync(dir, 0o555);
}

function writable(dir: string): void {
  chmodSync(dir, 0o755);
  for (const p of readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((p) => !p.startsWith('node_modules'))) chmodSync(join(dir, p), 0o755);
}
