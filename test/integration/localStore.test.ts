import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OffloadError } from '../../src/errors/offloadError.js';
import { ServeClient } from '../../src/remote/serveClient.js';
import { LocalStore, queryValidLocalPaths } from '../../src/store/localStore.js';
import { spawnServe } from '../../src/store/spawnServe.js';
import { instantiate, nixTestEnv, requireNix, type TestDerivation } from '../support/nixFixtures.js';

const MISSING = '/nix/store/00000000000000000000000000000000-not-there';

async function build(item: TestDerivation): Promise<void> {
  const transport = await spawnServe({ env: nixTestEnv });
  try {
    const client = await ServeClient.open(transport);
    const result = await client.buildDerivation(item.drvPath, item.drv);
    if (result.statusName !== 'Built') throw new Error(`building ${item.drvPath}: ${result.statusName} ${result.errorMsg}`);
  } finally {
    transport.close();
  }
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk);
  return Buffer.concat(parts);
}

describe('queryValidLocalPaths without Nix', () => {
  it('answers null when nix-store cannot be started', async () => {
    expect(await queryValidLocalPaths([MISSING], { nixStoreBin: '/nonexistent/nix-store' })).toBeNull();
  });

  it('still rejects a path that is not a store path', async () => {
    await expect(queryValidLocalPaths(['/etc/passwd'], { nixStoreBin: '/nonexistent/nix-store' })).rejects.toThrow(OffloadError);
  });
});

describe.runIf(requireNix())('LocalStore against the local Nix store', () => {
  let dep: TestDerivation;
  let top: TestDerivation;
  let big: TestDerivation;
  const store = new LocalStore({ env: nixTestEnv, maxConnections: 2 });

  beforeAll(async () => {
    dep = await instantiate({ name: 'local-dep', script: 'echo dep > $out' });
    await build(dep);
    top = await instantiate({ name: 'local-top', script: `echo ${dep.outPath} > $out`, inputs: [dep.outPath] });
    await build(top);
    big = await instantiate({ name: 'local-big', script: '/bin/head -c 3000000 /dev/zero > $out' });
    await build(big);
  });

  afterAll(() => store.close());

  it('answers validity as a set, and queryValidLocalPaths agrees', async () => {
    const paths = [dep.outPath, top.outPath, top.drvPath, MISSING];
    expect(await store.validPaths(paths)).toEqual(new Set([dep.outPath, top.outPath, top.drvPath]));
    expect(await queryValidLocalPaths(paths, { env: nixTestEnv })).toEqual(new Set([dep.outPath, top.outPath, top.drvPath]));
    expect(await store.validPaths([])).toEqual(new Set());
  });

  it('computes closures and path infos', async () => {
    expect((await store.closure([top.outPath])).sort()).toEqual([dep.outPath, top.outPath].sort());
    const [info] = await store.pathInfos([top.outPath]);
    expect(info).toMatchObject({ path: top.outPath, deriver: top.drvPath, references: [dep.outPath] });
  });

  it('runs operations in parallel over its pool', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, () => store.validPaths([dep.outPath, MISSING])));
    for (const answer of answers) expect(answer).toEqual(new Set([dep.outPath]));
  });

  it('exports a closure dependencies first and imports it back', async () => {
    const order: string[] = [];
    const exported = await collect(store.exportPaths([top.outPath, dep.outPath], { onPath: (p) => order.push(p.path) }));
    expect(order).toEqual([dep.outPath, top.outPath]);
    expect(exported.equals(Buffer.from(await nixStoreExport([dep.outPath, top.outPath])))).toBe(true);

    const imported = await store.importPaths(store.exportPaths([top.outPath, dep.outPath]));
    expect(imported.map((p) => p.path)).toEqual([dep.outPath, top.outPath]);
    expect(readFileSync(top.outPath, 'utf8')).toBe(`${dep.outPath}\n`);
  });

  it('recovers when exports are abandoned midway (more often than it has connections)', async () => {
    // Larger than any read-ahead, so each export is still running when its consumer stops.
    for (let i = 0; i < 3; i++) {
      for await (const _ of store.exportPaths([big.outPath])) break;
    }
    expect(await store.validPaths([dep.outPath])).toEqual(new Set([dep.outPath]));
  });

  it('rejects a non-store path before talking to Nix', async () => {
    await expect(store.validPaths(['/nix/store/short'])).rejects.toThrow(/not a valid store path/);
    expect(() => store.exportPaths(['/tmp/x'])).toThrow(OffloadError);
  });
});

function nixStoreExport(paths: string[]): Promise<Buffer> {
  const child = spawn('nix-store', ['--export', ...paths], { env: nixTestEnv, stdio: ['ignore', 'pipe', 'inherit'] });
  return collect(child.stdout);
}
