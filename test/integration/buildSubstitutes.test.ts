import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate, NIX_ENV, offload, parseJson } from './buildSupport.js';
import { serveDirectory } from '../../scripts/cluster/cacheServer.js';

const run = promisify(execFile);

/**
 * builders-use-substitutes: the builder fetches an input from its own binary
 * cache (a file:// cache served over HTTP on loopback) instead of receiving
 * it from here. The input (`cached-input`) is built locally and pushed to the
 * cache first; `cache-user` needs it.
 */
describe.runIf(integrationPrereqs())('offload build with builders-use-substitutes', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let cacheDir: string;
  let server: Server;
  let requests: string[] = [];
  let machines: string[];

  beforeAll(async () => {
    cacheDir = mkdtempSync(join(tmpdir(), 'offload-cache-'));
    const served = await serveDirectory(cacheDir);
    server = served.server;
    requests = served.requests;
    const port = new URL(served.url).port;
    cluster = await startTempCluster('build-subst', [{ name: 'ruby', maxJobs: 2, substituters: [`http://127.0.0.1:${port}`] }]);
    machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--json'];
  });
  afterAll(async () => {
    await cluster?.dispose();
    await new Promise((resolve) => server?.close(resolve));
    if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
  });

  /** Builds `cached-input` locally, pushes it to the cache, returns [its output, the cache-user drv]. */
  async function prepare(): Promise<{ cachedOut: string; userDrv: string }> {
    const [cachedDrv, userDrv] = await instantiate('substituted');
    const { stdout } = await run('nix-store', ['--realise', cachedDrv!], { env: NIX_ENV });
    const cachedOut = stdout.trim();
    await run('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--to', `file://${cacheDir}`, cachedOut], { env: NIX_ENV });
    return { cachedOut, userDrv: userDrv! };
  }

  it('lets the builder substitute an input from its cache instead of sending it', async () => {
    const { cachedOut, userDrv } = await prepare();
    const hash = cachedOut.slice('/nix/store/'.length, '/nix/store/'.length + 32);
    const r = await offload(['build', userDrv, ...machines, '--builders-use-substitutes']);
    expect(r.code, r.stderr).toBe(0);
    const job = parseJson(r).jobs.find((j) => j.name === 'cache-user')!;
    expect(job.host).toBe('ruby');
    expect(job.substituted).toEqual([cachedOut]);
    expect(job.sent).not.toContain(cachedOut);
    expect(requests).toContain(`/${hash}.narinfo`);
    expect(requests.some((u) => u.startsWith('/nar/'))).toBe(true);
    const out = parseJson(r).outputs[userDrv]!.out!;
    expect(readFileSync(out, 'utf8')).toMatch(/^cache-user [\d.]+ [\d.]+\ncached-input /);
  });

  it('sends the input itself without --builders-use-substitutes', async () => {
    const { cachedOut, userDrv } = await prepare();
    const hash = cachedOut.slice('/nix/store/'.length, '/nix/store/'.length + 32);
    const r = await offload(['build', userDrv, ...machines]);
    expect(r.code, r.stderr).toBe(0);
    const job = parseJson(r).jobs.find((j) => j.name === 'cache-user')!;
    expect(job.substituted).toEqual([]);
    expect(job.sent).toContain(cachedOut);
    expect(requests.filter((u) => u.includes(hash))).toEqual([]);
    expect(readFileSync(parseJson(r).outputs[userDrv]!.out!, 'utf8')).toMatch(/^cache-user /);
  });
});

