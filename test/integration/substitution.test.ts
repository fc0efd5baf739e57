import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, offload, parseJson, ROOT, type BuildJson, type CliResult } from './buildSupport.js';
import { serveDirectory } from '../../scripts/cluster/cacheServer.js';

const run = promisify(execFile);

/**
 * Binary caches first, on the real cluster with real signed caches: the
 * paths a test caches are built on `forge` (a builder no run uses), pushed
 * from there with `nix copy --to file://…?secret-key=…`, and the same
 * directory is also served over HTTP on loopback. Derivations touch a
 * marker file when they really build. `opal` substitutes from one of these
 * caches itself (its own nix.conf trusts the key), for builders-use-substitutes.
 */
describe.runIf(integrationPrereqs())('binary caches: fetch what a cache has, build the rest', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let dir: string;
  let publicKey: string;
  let secretKeyFile: string;
  let machines: string[];
  let opalCache: { dir: string; url: string; requests: string[] };
  const servers: Server[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'offload-subst-'));
    // Builders run in their own namespaces and write markers here too.
    chmodSync(dir, 0o755);
    secretKeyFile = join(dir, 'secret.key');
    await run('nix-store', ['--generate-binary-cache-key', 'offload-test-1', secretKeyFile, join(dir, 'public.key')], { env: NIX_ENV });
    publicKey = readFileSync(join(dir, 'public.key'), 'utf8').trim();
    const opalDir = emptyFolder(join(dir, 'on-builder-cache'));
    const served = await serveDirectory(opalDir);
    servers.push(served.server);
    opalCache = { dir: opalDir, url: served.url, requests: served.requests };
    cluster = await startTempCluster('subst', [
      { name: 'forge', maxJobs: 2 },
      { name: 'ruby', maxJobs: 2 },
      { name: 'opal', maxJobs: 2, substituters: [served.url], trustedPublicKeys: [publicKey] },
    ]);
    machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--exclude-hosts', 'forge,opal'];
  });
  afterAll(async () => {
    await cluster?.dispose();
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  interface Case {
    drvs: Record<string, string>;
    markers: string;
    cache: string;
    /** Names of the derivations that really built since `markers` was last cleared. */
    built(): string[];
  }

  /** A folder every builder may write into. */
  function emptyFolder(path: string): string {
    mkdirSync(path, { mode: 0o777 });
    chmodSync(path, 0o777);
    return path;
  }

  /** Fresh derivations of `attr` (each `name=drv`), a marker folder, an empty cache folder (or `cache`). */
  async function freshCase(label: string, attrs: string[], cache = emptyFolder(join(dir, `${label}-cache`))): Promise<Case> {
    const markers = emptyFolder(join(dir, `${label}-markers`));
    const nonce = `${label}-${Math.random().toString(36).slice(2)}`;
    const drvs: Record<string, string> = {};
    for (const attr of attrs) {
      const { stdout } = await run('nix-instantiate', [join(ROOT, 'fixtures', 'nix', 'caches.nix'), '-A', attr, '--argstr', 'nonce', nonce, '--argstr', 'markers', markers], { env: NIX_ENV });
      drvs[attr] = stdout.trim();
    }
    return { drvs, markers, cache, built: () => readdirSync(markers).sort() };
  }

  /** Builds the carrier on forge (its inputs stay there only) and pushes those inputs to the case's cache. */
  async function fillCache(c: Case, carrier: string, opts: { sign: boolean }): Promise<string[]> {
    const r = await offload(['build', c.drvs[carrier]!, ...machinesOnForge(), '--max-jobs', '0', '--no-substitute', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const { stdout: refs } = await run('nix-store', ['--query', '--references', c.drvs[carrier]!], { env: NIX_ENV });
    const inputDrvs = refs.split('\n').filter((p) => p.endsWith('.drv'));
    const { stdout: outs } = await run('nix-store', ['--query', '--outputs', ...inputDrvs], { env: NIX_ENV });
    const paths = outs.trim().split('\n');
    const to = `file://${c.cache}${opts.sign ? `?secret-key=${secretKeyFile}` : ''}`;
    const copy = await cluster.runOnBuilder('forge', ['nix', '--extra-experimental-features', 'nix-command', 'copy', '--to', to, ...paths]);
    expect(copy.code, copy.stderr).toBe(0);
    clearMarkers(c);
    return paths;
  }

  function clearMarkers(c: Case): void {
    for (const m of readdirSync(c.markers)) unlinkSync(join(c.markers, m));
  }

  function machinesOnForge(): string[] {
    return ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--hosts', 'forge'];
  }

  function trusting(...substituters: string[]): string[] {
    return ['--substituters', substituters.join(' '), '--option', 'trusted-public-keys', publicKey];
  }

  async function http(c: Case): Promise<{ url: string; requests: string[] }> {
    const served = await serveDirectory(c.cache);
    servers.push(served.server);
    return { url: served.url, requests: served.requests };
  }

  function job(json: BuildJson, name: string) {
    const found = json.jobs.filter((j) => j.name === name);
    if (found.length === 0) throw new Error(`no job ${name} in ${json.jobs.map((j) => `${j.name}:${j.status}`).join(', ')}`);
    return found.at(-1)! as BuildJson['jobs'][number] & { action: string };
  }

  function ok(r: CliResult): BuildJson {
    expect(r.code, r.stderr).toBe(0);
    return parseJson(r);
  }

  it('fetches cached leaves over HTTP instead of building them, locally', async () => {
    const c = await freshCase('local', ['wide.top', 'wide.carrier']);
    await fillCache(c, 'wide.carrier', { sign: true });
    const cache = await http(c);
    const r = await offload(['build', c.drvs['wide.top']!, ...machines, '--exclude-hosts', 'forge,ruby,opal', '--max-jobs', '1', ...trusting(cache.url), '--json']);
    const json = ok(r);
    expect(c.built(), r.stderr).toEqual(['wide-5', 'wide-6', 'wide-top']);
    for (const n of [1, 2, 3, 4]) expect(job(json, `wide-${n}`)).toMatchObject({ action: 'fetch', status: 'fetched' });
    expect(job(json, 'wide-top')).toMatchObject({ action: 'build', status: 'built', host: 'local' });
    expect(cache.requests.filter((u) => u.startsWith('/nar/'))).toHaveLength(4);
    const top = json.outputs[c.drvs['wide.top']!]!.out!;
    expect(readFileSync(top, 'utf8')).toMatch(/^wide-top .*\nwide-1 /);
  });

  it('fetches cached leaves from a file:// cache while builders build the rest', async () => {
    const c = await freshCase('remote', ['wide.top', 'wide.carrier']);
    await fillCache(c, 'wide.carrier', { sign: true });
    const json = ok(await offload(['build', c.drvs['wide.top']!, ...machines, '--max-jobs', '0', ...trusting(`file://${c.cache}`), '--json']));
    expect(c.built()).toEqual(['wide-5', 'wide-6', 'wide-top']);
    for (const n of [1, 2, 3, 4]) expect(job(json, `wide-${n}`)).toMatchObject({ action: 'fetch', status: 'fetched' });
    for (const n of ['wide-5', 'wide-6', 'wide-top']) expect(job(json, n)).toMatchObject({ action: 'build', host: 'ruby' });
    expect(job(json, 'wide-top').sent.length).toBeGreaterThanOrEqual(4);
  });

  it('with builders-use-substitutes, the builder fetches what only it needs: the local store never gets it', async () => {
    const c = await freshCase('on-builder', ['wide.top', 'wide.carrier'], opalCache.dir);
    const leaves = await fillCache(c, 'wide.carrier', { sign: true });
    const onOpal = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--hosts', 'opal', '--max-jobs', '0', '--builders-use-substitutes', ...trusting(opalCache.url)];
    const plan = JSON.parse((await offload(['plan', c.drvs['wide.top']!, ...onOpal, '--json'])).stdout) as { jobs: Array<{ name: string; action: string; fetchedOn?: string }> };
    expect(plan.jobs.filter((j) => j.action === 'fetch').map((j) => [j.name, j.fetchedOn]).sort()).toEqual([1, 2, 3, 4].map((n) => [`wide-${n}`, 'builder']));
    const r = await offload(['build', c.drvs['wide.top']!, ...onOpal, '--json']);
    const json = ok(r);
    expect(c.built()).toEqual(['wide-5', 'wide-6', 'wide-top']);
    for (const n of [1, 2, 3, 4]) expect(job(json, `wide-${n}`)).toMatchObject({ action: 'fetch', status: 'fetched', host: 'opal', from: opalCache.url });
    expect(job(json, 'wide-top').sent.filter((p) => leaves.includes(p))).toEqual([]);
    // Only opal downloaded NARs; here, the leaves were never valid.
    expect(opalCache.requests.filter((u) => u.startsWith('/nar/'))).toHaveLength(4);
    for (const leaf of leaves) expect(await locallyValid(leaf), leaf).toBe(false);
    const there = await cluster.runOnBuilder('opal', ['nix-store', '--check-validity', ...leaves]);
    expect(there.code, there.stderr).toBe(0);
    expect(readFileSync(json.outputs[c.drvs['wide.top']!]!.out!, 'utf8')).toMatch(/^wide-top .*\nwide-1 /);
  });

  it('with builders-use-substitutes, a builder whose caches lack a path gets it fetched here and sent', async () => {
    const c = await freshCase('not-on-builder', ['wide.top', 'wide.carrier']);
    const leaves = await fillCache(c, 'wide.carrier', { sign: true });
    const r = await offload(['build', c.drvs['wide.top']!, ...machines, '--max-jobs', '0', '--builders-use-substitutes', ...trusting(`file://${c.cache}`), '--json']);
    const json = ok(r);
    expect(c.built()).toEqual(['wide-5', 'wide-6', 'wide-top']);
    for (const n of [1, 2, 3, 4]) expect(job(json, `wide-${n}`)).toMatchObject({ action: 'fetch', status: 'fetched', host: 'caches' });
    expect(job(json, 'wide-top')).toMatchObject({ host: 'ruby', status: 'built' });
    expect(job(json, 'wide-top').sent).toEqual(expect.arrayContaining(leaves));
    expect(r.stderr).toMatch(/ruby could not fetch .* from its own substituters/);
  });

  async function locallyValid(path: string): Promise<boolean> {
    return run('nix-store', ['--check-validity', path], { env: NIX_ENV }).then(
      () => true,
      () => false,
    );
  }

  it('prunes a chain: with the middle cached, the bottom is neither built nor fetched', async () => {
    const c = await freshCase('chain', ['chain.top', 'chain.carrier']);
    await fillCache(c, 'chain.carrier', { sign: true });
    const cache = await http(c);
    const json = ok(await offload(['build', c.drvs['chain.top']!, ...machines, '--max-jobs', '1', ...trusting(cache.url), '--json']));
    expect(c.built()).toEqual(['chain-top']);
    expect(json.jobs.map((j) => j.name).sort()).toEqual(['chain-middle', 'chain-top']);
    expect(job(json, 'chain-middle')).toMatchObject({ action: 'fetch', status: 'fetched' });
    // Nothing about the bottom was even asked.
    const { stdout } = await run('nix-store', ['--query', '--outputs', bottomOf(c)], { env: NIX_ENV });
    const hash = stdout.trim().slice('/nix/store/'.length, '/nix/store/'.length + 32);
    expect(cache.requests.filter((u) => u.includes(hash)), cache.requests.join(" ")).toEqual([]);
  });

  function bottomOf(c: Case): string {
    const drv = readFileSync(c.drvs['chain.top']!, 'utf8');
    const middle = /\/nix\/store\/[a-z0-9]{32}-chain-middle\.drv/.exec(drv)![0];
    return /\/nix\/store\/[a-z0-9]{32}-chain-bottom\.drv/.exec(readFileSync(middle, 'utf8'))![0];
  }

  it('refuses unsigned narinfos: the leaves are built, with one warning naming the cache', async () => {
    const c = await freshCase('unsigned', ['wide.top', 'wide.carrier']);
    await fillCache(c, 'wide.carrier', { sign: false });
    const r = await offload(['build', c.drvs['wide.top']!, ...machines, '--max-jobs', '1', ...trusting(`file://${c.cache}`), '--json']);
    const json = ok(r);
    expect(c.built()).toEqual(['wide-1', 'wide-2', 'wide-3', 'wide-4', 'wide-5', 'wide-6', 'wide-top']);
    expect(json.jobs.every((j) => (j as { action?: string }).action === 'build')).toBe(true);
    const warnings = r.stderr.split('\n').filter((l) => l.includes('without a valid signature'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`file://${c.cache}`);
  });

  it('falls back to building when the NAR is missing, with one warning naming cache and path', async () => {
    const c = await freshCase('missing-nar', ['chain.top', 'chain.carrier']);
    const [middle] = await fillCache(c, 'chain.carrier', { sign: true });
    for (const nar of readdirSync(join(c.cache, 'nar'))) unlinkSync(join(c.cache, 'nar', nar));
    const cache = await http(c);
    const r = await offload(['build', c.drvs['chain.top']!, ...machines, '--max-jobs', '1', ...trusting(cache.url), '--json']);
    const json = ok(r);
    expect(c.built()).toEqual(['chain-bottom', 'chain-middle', 'chain-top']);
    expect(json.jobs.find((j) => j.name === 'chain-middle' && (j as { action?: string }).action === 'fetch')).toMatchObject({ status: 'fell-back' });
    const warnings = r.stderr.split('\n').filter((l) => l.includes('could not provide'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(cache.url);
    expect(warnings[0]).toContain(middle);
    expect(existsSync(json.outputs[c.drvs['chain.top']!]!.out!)).toBe(true);
  });

  it('says once that a cache is unreachable, after its short timeout, and still builds', async () => {
    const c = await freshCase('unreachable', ['wide.top']);
    // Accepts connections and never answers: what a cache behind a dead route looks like from here.
    const silent = createServer(() => undefined);
    servers.push(silent);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const r = await offload(['build', c.drvs['wide.top']!, ...machines, '--max-jobs', '1', ...trusting(url), '--option', 'connect-timeout', '1', '--json']);
    ok(r);
    expect(c.built()).toHaveLength(7);
    const warnings = r.stderr.split('\n').filter((l) => l.includes('unreachable'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`${url} is unreachable (no answer within 3 s)`);
  });

  it('plan --json shows the fetch/build split, with download sizes', async () => {
    const c = await freshCase('plan', ['wide.top', 'wide.carrier']);
    await fillCache(c, 'wide.carrier', { sign: true });
    const r = await offload(['plan', c.drvs['wide.top']!, ...machines, '--max-jobs', '1', ...trusting(`file://${c.cache}`), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout) as { jobs: Array<{ name: string; action: string; bytes?: number; host: string }>; counts: { build: number; fetch: number; downloadBytes: number } };
    const actions = Object.fromEntries(plan.jobs.map((j) => [j.name, j.action]));
    expect(actions).toEqual({ 'wide-1': 'fetch', 'wide-2': 'fetch', 'wide-3': 'fetch', 'wide-4': 'fetch', 'wide-5': 'build', 'wide-6': 'build', 'wide-top': 'build' });
    expect(plan.counts).toMatchObject({ build: 3, fetch: 4 });
    expect(plan.counts.downloadBytes).toBeGreaterThan(0);
    for (const j of plan.jobs.filter((x) => x.action === 'fetch')) expect(j.bytes).toBeGreaterThan(0);
    const text = await offload(['plan', c.drvs['wide.top']!, ...machines, '--max-jobs', '1', ...trusting(`file://${c.cache}`)]);
    expect(text.stdout).toMatch(/3 to build, 4 to fetch \([\d.]+ KiB download/);
    expect(c.built()).toEqual([]);
  });

  it('builds nothing and copies one path when only a builder holds the top output', async () => {
    const c = await freshCase('held', ['held.top', 'held.wrapper']);
    // The wrapper comes back here; the top (and the 12 leaves) stay on ruby.
    ok(await offload(['build', c.drvs['held.wrapper']!, ...machines, '--max-jobs', '0', '--json']));
    clearMarkers(c);
    const plan = await offload(['plan', c.drvs['held.top']!, ...machines, '--max-jobs', '0', '--ask-builders']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/held-top .* on builder ruby: copy [\d.]+ KiB here/);
    expect(plan.stdout).toMatch(/0 to build, 1 on builders \(1 copied here, 0 used there\)/);
    const json = ok(await offload(['build', c.drvs['held.top']!, ...machines, '--max-jobs', '0', '--json']));
    expect(c.built()).toEqual([]);
    expect(json.jobs).toHaveLength(1);
    expect(json.jobs[0]).toMatchObject({ name: 'held-top', action: 'copy', status: 'copied', from: 'ruby' });
    expect(readFileSync(json.outputs[c.drvs['held.top']!]!.out!, 'utf8')).toMatch(/^held-top /);
  });
});
