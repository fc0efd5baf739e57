import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BuildStatus, isSuccess } from '../../src/remote/buildResult.js';
import type { ExportedPath } from '../../src/remote/exportStream.js';
import { LocalNarError } from '../../src/remote/localNarError.js';
import { checkedNar } from '../../src/remote/narCheck.js';
import { ServeClient, ServeConnectionLostError, type NarStream, type PathInfo } from '../../src/remote/serveClient.js';
import { spawnServe, type ChildServeTransport } from '../../src/store/spawnServe.js';
import { UntrustedReplyError } from '../../src/remote/untrustedReplyError.js';
import { instantiate, nixStore, nixTestEnv, requireNix, type TestDerivation } from '../support/nixFixtures.js';

const MISSING = '/nix/store/00000000000000000000000000000000-not-there';

const open: ChildServeTransport[] = [];
async function connect(onLog?: (line: string) => void): Promise<{ client: ServeClient; transport: ChildServeTransport }> {
  const transport = await spawnServe({ env: nixTestEnv });
  open.push(transport);
  const client = await ServeClient.open(transport, onLog ? { onLog } : {});
  return { client, transport };
}

/**
 * NARs from memory, checked against their infos the way a builder's are: hashed here, or left to the receiving
 * store; or marked as written from the local store's files (`files`), whose hash only the receiver checks.
 */
async function* narsOf(items: { info: PathInfo; bytes: Buffer }[], host = 'memory', hash: 'here' | 'receiver' | 'files' = 'here'): AsyncGenerator<NarStream> {
  for (const { info, bytes } of items) {
    const parts = (async function* () {
      yield [bytes.subarray(0, 7)];
      yield [bytes.subarray(7)];
    })();
    if (hash === 'files') {
      yield { info, chunks: parts, fromLocalFiles: true };
      continue;
    }
    const chunks = checkedNar(parts, info, host, { hash: hash === 'here' });
    yield hash === 'here' ? { info, chunks } : { info, chunks, unhashedFrom: host };
  }
}

async function narOf(client: ServeClient, info: PathInfo): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const nar of client.dumpNars([info], { hash: 'none' })) for await (const batch of nar.chunks) chunks.push(...batch);
  return Buffer.concat(chunks);
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk);
  return Buffer.concat(parts);
}

describe.runIf(requireNix())('serve protocol against the local nix-store --serve --write', () => {
  let hello: TestDerivation;

  beforeAll(async () => {
    hello = await instantiate({
      name: 'serve-hello',
      script: 'echo hello from the builder; echo to stderr >&2; echo content > $out',
    });
  });

  afterEach(() => {
    for (const transport of open.splice(0)) transport.close();
  });

  it('greets Nix 2.8 (protocol 2.7) and speaks minor 6', async () => {
    const { client } = await connect();
    expect(client.serverVersion).toBe(0x207);
    expect(client.minor).toBe(6);
  });

  it('builds a derivation through build-derivation, streaming its log, then finds it valid', async () => {
    const lines: string[] = [];
    const { client } = await connect();
    expect(await client.queryValidPaths([hello.drvPath, hello.outPath, MISSING])).toEqual([hello.drvPath]);

    const result = await client.buildDerivation(hello.drvPath, hello.drv, { maxSilentTime: 60, buildTimeout: 120, onLog: (l) => lines.push(l) });
    expect(result.statusName).toBe('Built');
    expect(result.status).toBe(BuildStatus.Built);
    expect(result.errorMsg).toBe('');
    expect(result.timesBuilt).toBe(1);
    expect(result.stopTime).toBeGreaterThanOrEqual(result.startTime);
    expect([...result.builtOutputs.keys()]).toEqual([expect.stringMatching(/^sha256:[0-9a-f]{64}!out$/)]);
    expect(lines).toEqual(expect.arrayContaining(['hello from the builder', 'to stderr']));
    expect(readFileSync(hello.outPath, 'utf8')).toBe('content\n');

    expect(await client.queryValidPaths([hello.outPath], { lock: true })).toEqual([hello.outPath]);
    const again = await client.buildDerivation(hello.drvPath, hello.drv);
    expect(isSuccess(again.status)).toBe(true);
    expect(again.status).toBe(BuildStatus.AlreadyValid);
    expect(again.timesBuilt).toBe(0);
  });

  it('reports path infos with hash, content address and references', async () => {
    const { client } = await connect();
    const [drvInfo, ...rest] = await client.queryPathInfos([hello.drvPath, MISSING]);
    expect(rest).toEqual([]);
    expect(drvInfo).toMatchObject({ path: hello.drvPath, references: [], sigs: [] });
    expect(drvInfo?.deriver).toBeUndefined();
    expect(drvInfo?.narHash).toMatch(/^sha256:[0-9a-z]{52}$/);
    expect(drvInfo?.ca).toMatch(/^text:sha256:/);
    expect(drvInfo?.narSize).toBeGreaterThan(0);
    expect(drvInfo?.downloadSize).toBe(drvInfo?.narSize);
  });

  it('reports a failing builder as PermanentFailure with its log lines', async () => {
    const failing = await instantiate({ name: 'serve-fail', script: 'echo line1; echo line2 >&2; exit 3' });
    const lines: string[] = [];
    const { client } = await connect((l) => lines.push(l));
    const result = await client.buildDerivation(failing.drvPath, failing.drv);
    expect(result.status).toBe(BuildStatus.PermanentFailure);
    expect(result.errorMsg).toBe(`builder for '${failing.drvPath}' failed with exit code 3`);
    expect(result.builtOutputs.size).toBe(0);
    expect(lines).toEqual(expect.arrayContaining(['line1', 'line2']));
    // The connection survives a failed build.
    expect(await client.queryValidPaths([failing.outPath])).toEqual([]);
  });

  it('computes closures, with and without outputs', async () => {
    const dep = await instantiate({ name: 'serve-dep', script: 'echo dep > $out' });
    const { client } = await connect();
    expect((await client.buildDerivation(dep.drvPath, dep.drv)).status).toBe(BuildStatus.Built);
    const top = await instantiate({ name: 'serve-top', script: `echo ${dep.outPath} > $out`, inputs: [dep.outPath] });
    expect(top.drv.inputSrcs).toContain(dep.outPath);
    expect((await client.buildDerivation(top.drvPath, top.drv)).status).toBe(BuildStatus.Built);

    expect((await client.queryClosure([top.outPath])).sort()).toEqual([dep.outPath, top.outPath].sort());
    const withOutputs = await client.queryClosure([top.drvPath], true);
    expect(withOutputs).toEqual(expect.arrayContaining([top.drvPath, top.outPath, dep.outPath]));
    expect(await client.queryClosure([top.drvPath], false)).not.toContain(top.outPath);
  });

  it('exports exactly what nix-store --export writes, and nix-store --import takes it', async () => {
    const { client } = await connect();
    await client.buildDerivation(hello.drvPath, hello.drv);
    const seen: ExportedPath[] = [];
    const exported = await collect(client.exportPaths([hello.outPath], { onPath: (p) => seen.push(p) }));
    const reference = Buffer.from(await nixStoreBinary(['--export', hello.outPath]));
    expect(exported.equals(reference)).toBe(true);
    expect(seen).toEqual([{ path: hello.outPath, references: [], deriver: hello.drvPath, narSize: expect.any(Number) }]);

    const importer = spawn('nix-store', ['--import'], { env: nixTestEnv, stdio: ['pipe', 'pipe', 'inherit'] });
    const printed = collect(importer.stdout);
    await pipeline(client.exportPaths([hello.outPath]), importer.stdin);
    expect((await printed).toString().trim()).toBe(hello.outPath);
    // The stream ended exactly at its end: the connection is still in step.
    expect(await client.queryValidPaths([hello.outPath])).toEqual([hello.outPath]);
  });

  it('round-trips a path: export, delete, import through the serve protocol', async () => {
    const item = await instantiate({ name: 'serve-roundtrip', script: '/bin/mkdir -p $out/bin; echo data > $out/file; /bin/ln -s file $out/link; echo "#!/bin/sh" > $out/bin/run; /bin/chmod +x $out/bin/run' });
    const builder = await connect();
    expect((await builder.client.buildDerivation(item.drvPath, item.drv)).status).toBe(BuildStatus.Built);
    const exported = await collect(builder.client.exportPaths([item.outPath]));
    builder.client.close();
    await builder.transport.exited;

    await nixStore(['--delete', item.outPath]);
    const { client } = await connect();
    expect(await client.queryValidPaths([item.outPath])).toEqual([]);

    const imported = await client.importPaths([exported.subarray(0, 100), exported.subarray(100)]);
    expect(imported.map((p) => p.path)).toEqual([item.outPath]);
    expect(await client.queryValidPaths([item.outPath])).toEqual([item.outPath]);
    expect(readFileSync(`${item.outPath}/file`, 'utf8')).toBe('data\n');
    expect(readFileSync(`${item.outPath}/link`, 'utf8')).toBe('data\n');
    expect(await nixStore(['--verify-path', item.outPath])).toBe('');
  });

  it('streams a path out with dump-store-path and back in with add-to-store-NAR, hash checked on the way', async () => {
    const item = await instantiate({ name: 'serve-nar', script: '/bin/mkdir -p $out/d; echo data > $out/d/file; /bin/ln -s d/file $out/link' });
    const source = await connect();
    expect((await source.client.buildDerivation(item.drvPath, item.drv)).status).toBe(BuildStatus.Built);
    const [info] = await source.client.queryPathInfos([item.outPath]);
    const chunks: Buffer[] = [];
    for await (const nar of source.client.dumpNars([info!], { hash: 'here' })) for await (const batch of nar.chunks) chunks.push(...batch);
    // Still in step after the NAR: the next command gets its own reply.
    expect(await source.client.queryValidPaths([item.outPath])).toEqual([item.outPath]);
    expect(Buffer.concat(chunks).length).toBe(info!.narSize);
    // The server holds a temporary GC root on what it built until it exits.
    source.client.close();
    await source.transport.exited;

    await nixStore(['--delete', item.outPath]);
    const target = await connect();
    expect(await target.client.addNars(narsOf([{ info: info!, bytes: Buffer.concat(chunks) }]))).toBe(1);
    expect(await target.client.queryValidPaths([item.outPath])).toEqual([item.outPath]);
    expect(readFileSync(`${item.outPath}/link`, 'utf8')).toBe('data\n');
    expect(await nixStore(['--verify-path', item.outPath])).toBe('');
  });

  /**
   * A path's info as the store recorded it (the path itself deleted again, so a receiver would add it) and the
   * NAR of another path of the same size: `the truth` and `other` must have the same length.
   */
  async function recordedAndAnotherNar(name: string, other: string): Promise<{ item: TestDerivation; info: PathInfo; otherNar: Buffer }> {
    const item = await instantiate({ name, script: 'echo the truth > $out' });
    const source = await connect();
    expect((await source.client.buildDerivation(item.drvPath, item.drv)).status).toBe(BuildStatus.Built);
    const [info] = await source.client.queryPathInfos([item.outPath]);
    const otherItem = await instantiate({ name, script: `echo ${other} > $out` });
    expect((await source.client.buildDerivation(otherItem.drvPath, otherItem.drv)).status).toBe(BuildStatus.Built);
    const [otherInfo] = await source.client.queryPathInfos([otherItem.outPath]);
    const otherNar = await narOf(source.client, otherInfo!);
    source.client.close();
    await source.transport.exited;
    await nixStore(['--delete', item.outPath]);
    return { item, info: info!, otherNar };
  }

  for (const hash of ['here', 'receiver'] as const) {
    it(`stops a NAR whose hash differs from its path info before the receiving store registers it (hashed ${hash === 'here' ? 'as it streams' : 'by the receiving store'})`, async () => {
      const { item, info, otherNar } = await recordedAndAnotherNar('serve-liar', 'a lie!!!!');
      // The lie: the other path's NAR (same size) under this path's info, as a builder could send it.
      const target = await connect();
      const lie = narsOf([{ info, bytes: otherNar }], 'liar', hash);
      const error = await target.client.addNars(lie).catch((e: unknown) => e);
      // The receiver's refusal ("hash mismatch importing path") is the sender's lie, named as such.
      expect(error).toBeInstanceOf(UntrustedReplyError);
      expect(error).toMatchObject({ host: 'liar', path: item.outPath });
      expect((error as Error).message).toMatch(/liar cannot be trusted: its NAR does not have the hash sha256:\w+ its path info gives/);
      expect(target.client.usable).toBe(false);
      const { client } = await connect();
      expect(await client.queryValidPaths([item.outPath])).toEqual([]);
    });
  }

  it('names the local store, not the receiver, when a NAR written from its files does not have the recorded hash', async () => {
    const { item, info, otherNar } = await recordedAndAnotherNar('serve-changed', 'changed!!');
    // Files that changed behind Nix's back: another NAR of the same size under the path's recorded info.
    const target = await connect();
    const error = await target.client.addNars(narsOf([{ info, bytes: otherNar }], 'local', 'files')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LocalNarError);
    expect(error).toMatchObject({ path: item.outPath, exitCode: 1 });
    expect((error as Error).message).toMatch(/^The local store's \S+-serve-changed does not match what the store recorded for it: local refused the NAR written from its files, whose hash differs .*nix-store --verify --check-contents/);
    expect(target.client.usable).toBe(false);
    const { client } = await connect();
    expect(await client.queryValidPaths([item.outPath])).toEqual([]);
  });

  it('fails the pending build with ServeConnectionLostError when the server dies mid-build', async () => {
    const slow = await instantiate({ name: 'serve-slow', script: 'echo started; /bin/sleep 5; echo x > $out' });
    const { client, transport } = await connect();
    const started = new Promise<void>((resolve) => client.onLog((line) => line === 'started' && resolve()));
    const build = client.buildDerivation(slow.drvPath, slow.drv);
    await started;
    transport.child.kill('SIGKILL');
    await expect(build).rejects.toThrow(ServeConnectionLostError);
    await expect(build).rejects.toThrow(/Lost the connection to nix-store --serve on local while building/);
    expect(client.usable).toBe(false);
    await expect(client.queryValidPaths([slow.drvPath])).rejects.toThrow(ServeConnectionLostError);
  });

  it('closes the connection when an export is abandoned midway, so nothing reads a stale reply', async () => {
    const big = await instantiate({ name: 'serve-big', script: '/bin/head -c 3000000 /dev/zero > $out' });
    const { client, transport } = await connect();
    expect((await client.buildDerivation(big.drvPath, big.drv)).status).toBe(BuildStatus.Built);
    // Larger than any read-ahead, so the export is still running when the consumer stops.
    for await (const _ of client.exportPaths([big.outPath])) break;
    await transport.exited;
    expect(client.usable).toBe(false);
    await expect(client.queryValidPaths([hello.outPath])).rejects.toThrow(ServeConnectionLostError);
  });

  it('refuses a truncated import source without leaving the server waiting', async () => {
    const { client } = await connect();
    const exported = await collect(client.exportPaths([hello.drvPath]));
    await expect(client.importPaths([exported.subarray(0, exported.length - 9)])).rejects.toThrow(/ended while reading/);
    expect(client.usable).toBe(false);
  });
});

function nixStoreBinary(args: string[]): Promise<Buffer> {
  const child = spawn('nix-store', args, { env: nixTestEnv, stdio: ['ignore', 'pipe', 'inherit'] });
  return collect(child.stdout);
}
