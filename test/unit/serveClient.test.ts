import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Derivation } from '../../src/drv/derivation.js';
import { BuildStatus, buildStatusName, isSuccess, isTransient } from '../../src/remote/buildResult.js';
import { ServeProtocolError } from '../../src/remote/serveCodec/errors.js';
import { LineSplitter } from '../../src/remote/serveCodec/lineSplitter.js';
import { Serializer } from '../../src/remote/serveCodec/serializer.js';
import { ServeClient, ServeConnectionLostError, type NarStream, type PathInfo } from '../../src/remote/serveClient.js';
import { encodeAddToStoreNar, encodeExportEnd, encodeExportItem, encodeExportTrailer, encodeImportPaths } from '../../src/remote/serveCodec/messages.js';
import type { ServeTransport } from '../../src/remote/transport.js';
import { probePath, probeUnsignedImports } from '../../src/remote/unsignedImportProbe.js';
import { narBytes } from '../support/narBytes.js';
import { testDerivation } from './drvFixtures.js';

/**
 * A transport whose server side is a script: the replies are queued on
 * stdout up front (the client reads them in order), and what the client
 * writes is collected for byte-exact checks.
 */
function scriptedTransport(replies: Buffer[] = [], options: { packetPerWrite?: boolean } = {}) {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const written: Buffer[] = [];
  // Bytes per write the client makes: a corked batch (one writev on a pipe) counts as one.
  const writes: number[] = [];
  let corked = 0;
  stdin.on('data', (chunk: Buffer) => written.push(chunk));
  const write = stdin.write.bind(stdin);
  stdin.write = ((chunk: Buffer, ...rest: never[]) => {
    if (stdin.writableCorked > 0) corked += chunk.length;
    else writes.push(chunk.length);
    return write(chunk, ...rest);
  }) as typeof stdin.write;
  const uncork = stdin.uncork.bind(stdin);
  stdin.uncork = () => {
    writes.push(corked);
    corked = 0;
    uncork();
  };
  for (const reply of replies) stdout.write(reply);
  let closed = false;
  const transport: ServeTransport = {
    stdin,
    stdout,
    stderr,
    host: 'scripted',
    ...(options.packetPerWrite ? { packetPerWrite: true } : {}),
    close() {
      closed = true;
      stdout.end();
      stderr.end();
    },
  };
  return { transport, stdout, stderr, written: () => Buffer.concat(written), writes, isClosed: () => closed };
}

const greeting = (version: number) => new Serializer().u64(0x5452eecb).u64(version).flush();
const hash = 'avbb1da2h2j2zxv2wqajs13r57j6i787';
const drvPath = `/nix/store/${hash}-t.drv`;
const out = `/nix/store/${hash}-t`;
const dev = `/nix/store/${hash}-t-dev`;

const drv: Derivation = testDerivation({
  drvPath,
  name: 't',
  outputs: { out: { path: out, hashAlgo: '', hash: '' }, dev: { path: dev, hashAlgo: '', hash: '' } },
  args: ['-c', 'true'],
  env: { out, dev, Z: 'z', a: 'a' },
});

describe('ServeClient handshake', () => {
  it('sends magic 1 and version 2.6, and takes the common minor', async () => {
    const s = scriptedTransport([greeting(0x207)]);
    const client = await ServeClient.open(s.transport);
    expect(s.written().toString('hex')).toBe(new Serializer().u64(0x390c9deb).u64(0x206).flush().toString('hex'));
    expect(client.serverVersion).toBe(0x207);
    expect(client.minor).toBe(6);
  });

  it('explains a greeting that is not Nix (a chatty login shell)', async () => {
    const s = scriptedTransport([Buffer.from('Welcome to host\n')]);
    await expect(ServeClient.open(s.transport)).rejects.toThrow(/"Welcome "[^]*login shell print to stdout/);
    expect(s.isClosed()).toBe(true);
  });

  it('refuses another major version', async () => {
    const s = scriptedTransport([greeting(0x301)]);
    await expect(ServeClient.open(s.transport)).rejects.toThrow(/speaks protocol 3\.1/);
  });

  it('gives up on a silent server after the handshake timeout', async () => {
    const s = scriptedTransport();
    await expect(ServeClient.open(s.transport, { handshakeTimeoutMs: 50 })).rejects.toThrow(ServeConnectionLostError);
    expect(s.isClosed()).toBe(true);
  });

  it('reports a server that closes during the greeting as a lost connection, with its last words', async () => {
    const s = scriptedTransport();
    s.stderr.write('bash: nix-store: command not found\n');
    setTimeout(() => s.transport.close(), 20);
    await expect(ServeClient.open(s.transport)).rejects.toThrow(/Lost the connection[^]*command not found/);
  });
});

describe('ServeClient commands', () => {
  it('writes build-derivation for an old minor-2 server exactly, with maps in byte order', async () => {
    const s = scriptedTransport([greeting(0x202), new Serializer().u64(BuildStatus.TransientFailure).string('\u001b[31;1mboom\u001b[0m').flush()]);
    const client = await ServeClient.open(s.transport);
    const before = s.written().length;
    const result = await client.buildDerivation(drvPath, drv, { maxSilentTime: 7, buildTimeout: 9, maxLogSize: 11 });
    const expected = new Serializer()
      .u64(8)
      .string(drvPath)
      .u64(2)
      .string('dev').string(dev).string('').string('')
      .string('out').string(out).string('').string('')
      .strings([])
      .string('x86_64-linux')
      .string('/bin/sh')
      .strings(['-c', 'true'])
      .stringMap([['Z', 'z'], ['a', 'a'], ['dev', dev], ['out', out]])
      .u64(7).u64(9).u64(11)
      .flush();
    expect(s.written().subarray(before).toString('hex')).toBe(expected.toString('hex'));
    expect(result).toMatchObject({ status: BuildStatus.TransientFailure, statusName: 'TransientFailure', errorMsg: 'boom', timesBuilt: 0 });
    expect(isTransient(result.status)).toBe(true);
  });

  it('serialises concurrent commands: each gets its own reply', async () => {
    const s = scriptedTransport([
      greeting(0x207),
      new Serializer().strings([out]).flush(),
      new Serializer().strings([dev, out]).flush(),
    ]);
    const client = await ServeClient.open(s.transport);
    const [valid, closure] = await Promise.all([client.queryValidPaths([out, dev]), client.queryClosure([out], true)]);
    expect(valid).toEqual([out]);
    expect(closure).toEqual([dev, out]);
  });

  it('treats a reply path outside the store as a protocol error and drops the connection', async () => {
    const s = scriptedTransport([greeting(0x207), new Serializer().strings(['/etc/passwd']).flush()]);
    const client = await ServeClient.open(s.transport);
    await expect(client.queryValidPaths([out])).rejects.toThrow(ServeProtocolError);
    expect(client.usable).toBe(false);
    expect(s.isClosed()).toBe(true);
    await expect(client.queryValidPaths([out])).rejects.toThrow(/no longer usable/);
  });

  it('rejects bad arguments before sending anything, and stays usable', async () => {
    const s = scriptedTransport([greeting(0x207)]);
    const client = await ServeClient.open(s.transport);
    const sent = s.written().length;
    await expect(client.queryValidPaths(['/nix/store/x'])).rejects.toThrow(/not a valid store path/);
    await expect(client.buildDerivation(out, drv)).rejects.toThrow(/does not end in \.drv/);
    expect(() => client.exportPaths(['relative'])).toThrow(/not a valid store path/);
    expect(s.written().length).toBe(sent);
    expect(client.usable).toBe(true);
  });

  it('fails an import whose source dies with the source’s own error, so a lost exporter is retried, not blamed on the stream', async () => {
    const s = scriptedTransport([greeting(0x207)]);
    const client = await ServeClient.open(s.transport);
    const lost = new ServeConnectionLostError('Lost the connection to nix-store --serve on ruby while exporting paths.', 'ruby');
    async function* dyingExport(): AsyncGenerator<Buffer> {
      yield new Serializer().u64(1).flush().subarray(0, 4);
      throw lost;
    }
    await expect(client.importPaths(dyingExport())).rejects.toBe(lost);
    // The server is mid-import: the channel cannot be used again.
    expect(client.usable).toBe(false);
    const t = scriptedTransport([greeting(0x207)]);
    const other = await ServeClient.open(t.transport);
    await expect(other.importPaths([new Serializer().u64(1).flush()])).rejects.toThrow(/ended while reading/);
  });

  it('fails a command cut off mid-reply with ServeConnectionLostError', async () => {
    const s = scriptedTransport([greeting(0x207), new Serializer().u64(2).string(out).flush()]);
    const client = await ServeClient.open(s.transport);
    const pending = client.queryClosure([out]);
    setTimeout(() => {
      s.stdout.end();
      s.stderr.end();
    }, 10);
    await expect(pending).rejects.toThrow(ServeConnectionLostError);
  });

  it("waits for a dying server's last error line, even when its stdout closes first", async () => {
    const s = scriptedTransport([greeting(0x207)]);
    const client = await ServeClient.open(s.transport);
    const pending = client.queryClosure([out]);
    setTimeout(() => {
      s.stdout.end();
      // The two pipes are read independently: stderr's last words may come after stdout's end.
      setTimeout(() => {
        s.stderr.write("\u001b[31;1merror:\u001b[0m cannot add path '/nix/store/abc-top' because it lacks a valid signature\n");
        s.stderr.end();
      }, 30);
    }, 10);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServeConnectionLostError);
    expect((error as ServeConnectionLostError).serverError).toBe("cannot add path '/nix/store/abc-top' because it lacks a valid signature");
  });

  it('the trust probe adds its path with add-to-store-NAR, then offers it unsigned without its content address', async () => {
    const { info, nar } = probePath();
    const ack = new Serializer().u64(1).flush();
    const s = scriptedTransport([greeting(0x207), new Serializer().strings([]).flush(), ack, ack]);
    const client = await ServeClient.open(s.transport);
    const before = s.written().length;
    expect(await probeUnsignedImports(client)).toEqual({ accepted: true });
    const add = (ca: string) => new Serializer().u64(9).string(info.path).string('').string(info.narHash!).strings([]).u64(0).u64(info.narSize).u64(0).strings([]).string(ca).flush();
    const asked = new Serializer().u64(1).u64(0).u64(0).strings([info.path]).flush();
    expect(s.written().subarray(before).toString('hex')).toBe(Buffer.concat([asked, add(info.ca!), nar, add(''), nar]).toString('hex'));
  });

  it('the trust probe does not ask a server older than 2.5, which has no add-to-store-NAR', async () => {
    const s = scriptedTransport([greeting(0x204)]);
    const client = await ServeClient.open(s.transport);
    await expect(probeUnsignedImports(client)).rejects.toThrow(/too old for add-to-store-NAR/);
  });

  it('builds from the server\'s own .drv with build-paths when told to, and reads its exit status', async () => {
    const s = scriptedTransport([greeting(0x207), new Serializer().u64(1).string("builder for 'x' failed with exit code 3").flush()]);
    const client = await ServeClient.open(s.transport, { buildFromStoreDerivations: true });
    const before = s.written().length;
    const result = await client.buildDerivation(drvPath, drv, { maxSilentTime: 7, buildTimeout: 9 });
    const expected = new Serializer().u64(6).strings([`${drvPath}!dev,out`]).u64(7).u64(9).u64(0).u64(0).u64(1).flush();
    expect(s.written().subarray(before).toString('hex')).toBe(expected.toString('hex'));
    expect(result).toMatchObject({ status: BuildStatus.PermanentFailure, errorMsg: "builder for 'x' failed with exit code 3" });
  });

  it('reads path infos up to the empty-string terminator', async () => {
    const s = scriptedTransport([
      greeting(0x207),
      new Serializer()
        .string(out).string(drvPath).strings([dev]).u64(100).u64(120).string('sha256:abc').string('').strings(['k:sig'])
        .string('')
        .flush(),
    ]);
    const client = await ServeClient.open(s.transport);
    expect(await client.queryPathInfos([out])).toEqual([
      { path: out, deriver: drvPath, references: [dev], downloadSize: 100, narSize: 120, narHash: 'sha256:abc', sigs: ['k:sig'] },
    ]);
  });

  it('hands an idle receiver the first bytes of a NAR at once, not after 256 KiB of it have arrived', async () => {
    const s = scriptedTransport([greeting(0x207), new Serializer().u64(1).flush()]);
    const client = await ServeClient.open(s.transport);
    // One SSH packet of a NAR, as a copy back receives them.
    const first = Buffer.alloc(32 * 1024, 0xa1);
    const rest = Buffer.alloc(1000, 0xb2);
    // The rest of the NAR comes only once the receiver has the first part: a client that held it back would wait forever.
    const received = new Promise<void>((resolve) => {
      const look = () => (s.written().includes(first) ? resolve() : undefined);
      s.transport.stdin.on('data', look);
    });
    async function* chunks(): AsyncGenerator<readonly Buffer[]> {
      yield [first];
      await received;
      yield [rest];
    }
    const info = { path: out, references: [], downloadSize: 0, narSize: first.length + rest.length, narHash: `sha256:${'0'.repeat(52)}`, sigs: [] };
    async function* nars(): AsyncGenerator<NarStream> {
      yield { info, chunks: chunks() };
    }
    expect(await client.addNars(nars())).toBe(1);
    expect(s.written().subarray(-(first.length + rest.length)).equals(Buffer.concat([first, rest]))).toBe(true);
  });

  it('gathers a NAR into 256 KiB writes for an SSH channel, which always looks idle', async () => {
    const s = scriptedTransport([greeting(0x207), new Serializer().u64(1).flush()], { packetPerWrite: true });
    const client = await ServeClient.open(s.transport);
    // 16 source batches of 64 KiB, as a local nix-store's pipe delivers an upload.
    const piece = Buffer.alloc(64 * 1024, 0xc3);
    async function* chunks(): AsyncGenerator<readonly Buffer[]> {
      for (let i = 0; i < 16; i++) yield [piece];
    }
    const info = { path: out, references: [], downloadSize: 0, narSize: 16 * piece.length, narHash: `sha256:${'0'.repeat(52)}`, sigs: [] };
    async function* nars(): AsyncGenerator<NarStream> {
      yield { info, chunks: chunks() };
    }
    const before = s.writes.length;
    expect(await client.addNars(nars())).toBe(1);
    // 256 KiB each (the last may carry the NAR's end), never one per 64 KiB read.
    const big = s.writes.slice(before).filter((n) => n >= piece.length);
    expect(big.length).toBeLessThanOrEqual(4);
    expect(big.every((n) => n >= 4 * piece.length)).toBe(true);
    expect(s.written().subarray(-16 * piece.length).equals(Buffer.concat(Array.from({ length: 16 }, () => piece)))).toBe(true);
  });

  it('hands stderr to log listeners line by line', async () => {
    const lines: string[] = [];
    const s = scriptedTransport([greeting(0x207)]);
    const client = await ServeClient.open(s.transport, { onLog: (l) => lines.push(l) });
    const other: string[] = [];
    const off = client.onLog((l) => other.push(l));
    s.stderr.write('one\ntw');
    s.stderr.write('o\r\n');
    await new Promise((r) => setImmediate(r));
    off();
    s.stderr.write('three\n');
    await new Promise((r) => setImmediate(r));
    expect(lines).toEqual(['one', 'two', 'three']);
    expect(other).toEqual(['one', 'two']);
  });
});

describe('ServeClient.addNars', () => {
  const paths = Array.from({ length: 300 }, (_, i) => `/nix/store/${hash}-small-${i}`);
  const narOf = (i: number) => Buffer.alloc(700, i % 256);
  const infos: PathInfo[] = paths.map((path, i) => ({ path, references: i > 0 ? [paths[i - 1]!] : [], downloadSize: 700, narSize: 700, narHash: `sha256:${'0'.repeat(52)}`, sigs: [] }));
  async function* nars(): AsyncGenerator<NarStream> {
    for (const [i, info] of infos.entries()) {
      yield { info, chunks: (async function* () { yield [narOf(i).subarray(0, 100), narOf(i).subarray(100)]; })() };
    }
  }
  const ack = new Serializer().u64(1).flush();

  it("sends 300 small paths' requests and NARs in order, a few writes in all, and takes 300 acknowledgements", async () => {
    const s = scriptedTransport([greeting(0x207), ...infos.map(() => ack)]);
    const client = await ServeClient.open(s.transport);
    const writes: number[] = [];
    s.transport.stdin.on('data', (chunk: Buffer) => writes.push(chunk.length));
    const counted: number[] = [];
    expect(await client.addNars(nars(), { onBytes: (n) => counted.push(n) })).toBe(300);
    const expected = Buffer.concat(infos.flatMap((info, i) => [encodeAddToStoreNar(info), narOf(i)]));
    expect(s.written().subarray(16).equals(expected)).toBe(true);
    expect(writes.length).toBeLessThanOrEqual(3);
    expect(counted.reduce((a, b) => a + b, 0)).toBe(300 * 700);
  });

  it("gives a NAR's chunks back to their source only once the server's input has taken them, each once", async () => {
    const s = scriptedTransport([greeting(0x207), ack]);
    const client = await ServeClient.open(s.transport);
    const chunks: Buffer[] = [0, 1, 2].map((i) => Buffer.alloc(300 * 1024, i + 1));
    const info: PathInfo = { ...infos[0]!, references: [], narSize: 900 * 1024 };
    const end = (chunk: Buffer) => 16 + encodeAddToStoreNar(info).length + (chunks.indexOf(chunk) + 1) * chunk.length;
    const given: { chunk: number; taken: boolean }[] = [];
    const recycle = (chunk: Buffer) => given.push({ chunk: chunks.indexOf(chunk), taken: s.written().length >= end(chunk) });
    async function* one(): AsyncGenerator<NarStream> {
      yield { info, chunks: (async function* () { for (const chunk of chunks) yield [chunk]; })(), recycle };
    }
    expect(await client.addNars(one())).toBe(1);
    // The input takes the last chunk when its reader has read it, which may be after the acknowledgement.
    for (let i = 0; i < 100 && given.length < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(given).toEqual([0, 1, 2].map((chunk) => ({ chunk, taken: true })));
  });

  it('sends the same paths to a server older than add-to-store-NAR as one import-paths export stream', async () => {
    const s = scriptedTransport([greeting(0x204), ack]);
    const client = await ServeClient.open(s.transport);
    expect(await client.addNars(nars())).toBe(300);
    const expected = Buffer.concat([encodeImportPaths(), ...infos.flatMap((info, i) => [encodeExportItem(), narOf(i), encodeExportTrailer(info)]), encodeExportEnd()]);
    expect(s.written().subarray(16).equals(expected)).toBe(true);
  });
});

describe('ServeClient.close', () => {
  const info: PathInfo = { path: out, references: [], downloadSize: 0, narSize: 1024 * 1024, narHash: `sha256:${'0'.repeat(52)}`, sigs: [] };
  /** A scripted server whose transport records whether the client detached from it. */
  async function opened(replies: Buffer[]) {
    const s = scriptedTransport([greeting(0x207), ...replies]);
    let detached = false;
    s.transport.detach = () => (detached = true);
    return { client: await ServeClient.open(s.transport), detached: () => detached, stdout: s.stdout };
  }
  // The first bytes of a NAR, in two writes (a NAR's last batch is held back until its end): the server is still writing the rest.
  const narStart = [
    new Serializer().string('nix-archive-1').string('(').string('type').string('regular').flush(),
    Buffer.concat([new Serializer().string('contents').u64(512 * 1024).flush(), Buffer.alloc(128 * 1024)]),
  ];

  it('detaches from a server with nothing in progress, also once a dump was read to its end', async () => {
    const nar = narBytes({ type: 'regular', contents: Buffer.from('hello') });
    const { client, detached } = await opened([nar]);
    for await (const stream of client.dumpNars([{ ...info, narSize: nar.length }], { hash: 'none' })) for await (const _ of stream.chunks);
    client.close();
    expect(detached()).toBe(true);
  });

  it('does not detach from a server in the middle of a dump, and fails the dump', async () => {
    const { client, detached, stdout } = await opened([narStart[0]!]);
    const dump = client.dumpNars([info], { hash: 'none' });
    const nar = (await dump.next()).value as NarStream;
    const batches = nar.chunks[Symbol.asyncIterator]();
    const first = batches.next();
    setImmediate(() => stdout.write(narStart[1]));
    await first;
    client.close();
    expect(detached()).toBe(false);
    await expect(batches.next()).rejects.toThrow(ServeConnectionLostError);
    await expect(dump.next()).rejects.toThrow();
  });

  it('does not detach from a server stopped by a command that failed midway', async () => {
    const { client, detached } = await opened([]);
    async function* failing(): AsyncGenerator<NarStream> {
      yield {
        info,
        chunks: (async function* () {
          yield [Buffer.alloc(1024)];
          throw new Error('the source went away');
        })(),
      };
    }
    await expect(client.addNars(failing())).rejects.toThrow('the source went away');
    client.close();
    expect(detached()).toBe(false);
  });

  it('does not detach from a server in the middle of an export', async () => {
    const exportStart = new Serializer().u64(1).flush();
    const { client, detached, stdout } = await opened([exportStart, narStart[0]!]);
    const stream = client.exportPaths([out]);
    const ended = new Promise((resolve) => stream.once('close', resolve));
    stream.on('error', () => undefined);
    const data = new Promise((resolve) => stream.once('data', resolve));
    setTimeout(() => stdout.write(narStart[1]), 20);
    await data;
    client.close();
    expect(detached()).toBe(false);
    stream.destroy();
    await ended;
  });
});

describe('LineSplitter', () => {
  it('keeps multi-byte characters split across chunks and flushes a last unterminated line', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((l) => lines.push(l));
    const text = Buffer.from('größe\nend');
    splitter.push(text.subarray(0, 3));
    splitter.push(text.subarray(3));
    splitter.end();
    expect(lines).toEqual(['größe', 'end']);
  });

  it('cuts a line that never ends instead of growing without bound', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter((l) => lines.push(l));
    for (let i = 0; i < 20; i++) splitter.push(Buffer.alloc(8192, 0x61));
    expect(lines.length).toBeGreaterThanOrEqual(2);
  });
});

describe('build status', () => {
  it('has Nix numbers and classifies like Hydra', () => {
    expect(BuildStatus.TimedOut).toBe(8);
    expect(BuildStatus.NoSubstituters).toBe(14);
    expect(buildStatusName(13)).toBe('ResolvesToAlreadyValid');
    expect(buildStatusName(99)).toBe('Unknown(99)');
    expect([0, 1, 2, 13].every(isSuccess)).toBe(true);
    expect([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14].some(isSuccess)).toBe(false);
    expect([...Array(16).keys()].filter(isTransient)).toEqual([BuildStatus.TransientFailure, BuildStatus.MiscFailure]);
  });
});
