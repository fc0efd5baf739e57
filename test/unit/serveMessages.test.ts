import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDrv } from '../../src/drv/parseDrv.js';
import { BuildStatus } from '../../src/remote/buildResult.js';
import { ServeProtocolError } from '../../src/remote/serveCodec/errors.js';
import { probePath } from '../../src/remote/unsignedImportProbe.js';
import {
  decodeBuildPathsReply,
  decodeBuildResult,
  decodeHello,
  decodeImportAck,
  decodePathInfos,
  decodeStorePaths,
  encodeAddToStoreNar,
  encodeBuildDerivation,
  encodeBuildPaths,
  encodeDumpStorePath,
  encodeExportEnd,
  encodeExportItem,
  encodeExportPaths,
  encodeExportTrailer,
  encodeHello,
  encodeImportPaths,
  encodeQueryClosure,
  encodeQueryPathInfos,
  encodeQueryValidPaths,
  sharedMinor,
  type PathInfo,
} from '../../src/remote/serveCodec/messages.js';
import { ServeReader } from '../../src/remote/serveCodec/parser.js';
import { checkedNar } from '../../src/remote/narCheck.js';
import { NarScanner } from '../../src/remote/narScanner.js';
import { Serializer } from '../../src/remote/serveCodec/serializer.js';

/**
 * Every serve-protocol message offload speaks, byte for byte, per protocol
 * minor version (after pg-protocol's testForMessage). The requests are the
 * bytes Nix 2.8 accepted and the replies the bytes it sent, recorded by
 * scripts/capture-serve-replies.ts into fixtures/serve/nix-2.8.json.
 */
interface Exchange {
  request: string;
  reply: string;
}
interface Recording {
  drvPath: string;
  drv: string;
  queryValidPaths: Exchange;
  queryPathInfos: Exchange;
  queryClosure: Exchange;
  buildDerivation: Exchange;
  buildPathsDrvPath: string;
  addToStoreNar: Exchange;
  buildPaths: Exchange;
  dumpStorePath: Exchange;
}
const nix28 = JSON.parse(readFileSync(new URL('../../fixtures/serve/nix-2.8.json', import.meta.url), 'utf8')) as {
  source: string;
  greeting: string;
  minors: Record<string, Recording>;
};

const STORE = '/nix/store';
const MISSING = '/nix/store/00000000000000000000000000000000-not-there';
const SOURCE = '/nix/store/2xyxwvq59xzdm8y9mk8wxhfmi5jhch91-captured.txt';
const NAR_HASH = 'sha256:00wmm8jnbipvdyyy1slfzadaqnkmq6s0rqzpk0d57w5d4a2z2dvq';

const readerOf = (hex: string) => new ServeReader([Buffer.from(hex, 'hex')], 'a recording');
const hex = (bytes: Buffer) => bytes.toString('hex');

/** The reply in two chunks cut at each byte boundary, then in chunks of one byte. */
function* splits(bytes: Buffer): Generator<Buffer[]> {
  for (let cut = 1; cut < bytes.length; cut++) yield [bytes.subarray(0, cut), bytes.subarray(cut)];
  yield [...bytes].map((byte) => Buffer.of(byte));
}

/**
 * Decodes `replyHex` and expects `expected`, with every byte consumed:
 * whole (decoded synchronously from the buffer) and split at every byte
 * boundary (the reader waits for the bytes a layout is short of).
 */
function testForReply<T>(name: string, replyHex: string, decode: (reader: ServeReader) => Promise<T>, expected: T): void {
  it(`reads ${name}`, async () => {
    const reader = readerOf(replyHex);
    expect(await decode(reader)).toStrictEqual(expected);
    expect(await reader.atEnd()).toBe(true);
  });
  it(`reads ${name} split at every byte`, async () => {
    for (const chunks of splits(Buffer.from(replyHex, 'hex'))) {
      const reader = new ServeReader(chunks, 'a recording');
      expect(await decode(reader)).toStrictEqual(expected);
      expect(await reader.atEnd()).toBe(true);
    }
  });
}

it('has recordings of the source file the tables name', () => {
  expect(nix28.source).toBe(SOURCE);
  expect(Object.keys(nix28.minors)).toEqual(['2', '3', '4', '6']);
});

describe('greeting', () => {
  it('writes the client magic and version 2.6', () => {
    expect(hex(encodeHello())).toBe('eb9d0c3900000000' + '0602000000000000');
  });

  it('reads Nix 2.8 answering with its magic and 2.7, and both sides then speak minor 6', async () => {
    const version = await decodeHello(readerOf(nix28.greeting), 'local');
    expect(version).toBe(0x207);
    expect(sharedMinor(version)).toBe(6);
    expect(sharedMinor(0x203)).toBe(3);
  });

  it('refuses a server that is not nix-store, saying what it printed', async () => {
    await expect(decodeHello(readerOf(Buffer.from('Welcome!').toString('hex')), 'ruby')).rejects.toThrow(
      /ruby answered the serve-protocol greeting with "Welcome!" instead of Nix's magic number/,
    );
  });

  it('refuses another major version', async () => {
    const reply = new Serializer().u64(0x5452eecb).u64(0x307).flush();
    await expect(decodeHello(readerOf(hex(reply)), 'ruby')).rejects.toThrow(/speaks protocol 3\.7/);
  });
});

describe('commands without a minor-dependent layout', () => {
  it('import-paths is the command word; the export stream follows', () => {
    expect(hex(encodeImportPaths())).toBe('0400000000000000');
  });

  it('an export stream (import-paths on a server older than 2.5): 1, the NAR, the trailer (magic, path, references, deriver, no signature); 0 at the end', () => {
    expect(hex(encodeExportItem())).toBe('0100000000000000');
    expect(hex(encodeExportTrailer({ path: SOURCE, references: [SOURCE], deriver: MISSING }))).toBe(
      '4e49584500000000' + hex(new Serializer().string(SOURCE).flush()) + '0100000000000000' + hex(new Serializer().string(SOURCE).flush()) + hex(new Serializer().string(MISSING).flush()) + '0000000000000000',
    );
    expect(hex(encodeExportTrailer({ path: SOURCE, references: [] }))).toBe('4e49584500000000' + hex(new Serializer().string(SOURCE).flush()) + '0000000000000000' + '0000000000000000' + '0000000000000000');
    expect(hex(encodeExportEnd())).toBe('0000000000000000');
  });

  it('export-paths carries the obsolete sign flag 0, then the paths', () => {
    expect(hex(encodeExportPaths([SOURCE]))).toBe(
      '0500000000000000' + '0000000000000000' + '0100000000000000' + hex(new Serializer().string(SOURCE).flush()),
    );
  });

  it('reads the import acknowledgement, and refuses anything but 1', async () => {
    await expect(decodeImportAck(readerOf('0100000000000000'))).resolves.toBeUndefined();
    await expect(decodeImportAck(readerOf('0200000000000000'))).rejects.toThrow(ServeProtocolError);
  });

  it('refuses a reply path outside the store', async () => {
    const reply = new Serializer().strings(['/etc/passwd']).flush();
    await expect(decodeStorePaths(readerOf(hex(reply)), 'the valid paths', STORE)).rejects.toThrow(/not a store path/);
  });
});

for (const [minorText, recording] of Object.entries(nix28.minors)) {
  const minor = Number(minorText);
  const context = { minor, storeDir: STORE };

  describe(`protocol 2.${minor}, as Nix 2.8 speaks it`, () => {
    it('writes query-valid-paths', () => {
      expect(hex(encodeQueryValidPaths([SOURCE, MISSING], { lock: false, substitute: false }))).toBe(recording.queryValidPaths.request);
    });
    testForReply('the valid paths', recording.queryValidPaths.reply, (r) => decodeStorePaths(r, 'the valid paths', STORE), [SOURCE]);

    it('writes query-path-infos', () => {
      expect(hex(encodeQueryPathInfos([SOURCE, MISSING]))).toBe(recording.queryPathInfos.request);
    });
    const info: PathInfo = { path: SOURCE, references: [], downloadSize: 224, narSize: 224, sigs: [] };
    // narHash, ca and sigs come from minor 4 on.
    const expectedInfo: PathInfo = minor >= 4 ? { ...info, narHash: NAR_HASH, ca: `fixed:r:${NAR_HASH}` } : info;
    testForReply('the path infos, leaving out the invalid path', recording.queryPathInfos.reply, (r) => decodePathInfos(r, context), [expectedInfo]);

    it('writes query-closure', () => {
      expect(hex(encodeQueryClosure([SOURCE], false))).toBe(recording.queryClosure.request);
    });
    testForReply('the closure', recording.queryClosure.reply, (r) => decodeStorePaths(r, 'the closure', STORE), [SOURCE]);

    const drv = parseDrv(recording.drv, recording.drvPath);
    it('writes build-derivation: the BasicDerivation and the build settings of this minor', () => {
      const bytes = encodeBuildDerivation(recording.drvPath, drv, { maxSilentTime: 60, buildTimeout: 120, maxLogSize: 0 }, minor, STORE);
      expect(hex(bytes)).toBe(recording.buildDerivation.request);
      // maxSilentTime, buildTimeout; maxLogSize from minor 2; nrRepeats 0 and enforceDeterminism from minor 3.
      const settings = ['3c00000000000000', '7800000000000000', '0000000000000000', ...(minor >= 3 ? ['0000000000000000', '0100000000000000'] : [])];
      expect(hex(bytes).endsWith(settings.join(''))).toBe(true);
    });

    it('reads the build result split at every byte as whole', async () => {
      const whole = await decodeBuildResult(readerOf(recording.buildDerivation.reply), minor);
      for (const chunks of splits(Buffer.from(recording.buildDerivation.reply, 'hex'))) {
        expect(await decodeBuildResult(new ServeReader(chunks, 'a recording'), minor)).toStrictEqual(whole);
      }
    });

    it('reads the build result', async () => {
      const reader = readerOf(recording.buildDerivation.reply);
      const result = await decodeBuildResult(reader, minor);
      expect(result).toMatchObject({ status: BuildStatus.Built, statusName: 'Built', errorMsg: '', isNonDeterministic: false });
      // timesBuilt, start and stop time from minor 3 on.
      expect(result.timesBuilt).toBe(minor >= 3 ? 1 : 0);
      if (minor >= 3) expect(result.stopTime).toBeGreaterThanOrEqual(result.startTime);
      else expect([result.startTime, result.stopTime]).toEqual([0, 0]);
      const id = expect.stringMatching(/^sha256:[0-9a-f]{64}!out$/);
      const realisation = expect.stringContaining(`"outPath":"${drv.outputs['out']!.path.slice(STORE.length + 1)}"`);
      if (minor >= 6) {
        expect([...result.builtOutputs]).toEqual([[id, realisation]]);
      } else {
        // Nix 2.8 sends the built outputs whatever the client's minor: opServe tests
        // `GET_PROTOCOL_MINOR(clientVersion >= 6)`, a misplaced parenthesis. A client
        // below 6 would read them as the next reply; offload announces 6.
        expect(result.builtOutputs.size).toBe(0);
        expect([...(await reader.stringMap('the built outputs'))]).toEqual([[id, realisation]]);
      }
      expect(await reader.atEnd()).toBe(true);
    });

    it('writes dump-store-path: the command word and the path', () => {
      expect(hex(encodeDumpStorePath(SOURCE))).toBe(recording.dumpStorePath.request);
      expect(recording.dumpStorePath.request).toBe('0300000000000000' + hex(new Serializer().string(SOURCE).flush()));
    });

    it("reads the NAR dump-store-path sends, with no length prefix: the scanner finds its end, and its size and hash are the path info's", async () => {
      const reader = readerOf(recording.dumpStorePath.reply);
      const chunks: Buffer[] = [];
      for await (const chunk of checkedNar(reader.scan(new NarScanner(), 'the NAR'), { ...info, narHash: NAR_HASH }, 'local', { hash: true })) chunks.push(...chunk);
      expect(hex(Buffer.concat(chunks))).toBe(recording.dumpStorePath.reply);
      expect(Buffer.concat(chunks).length).toBe(224);
      expect(await reader.atEnd()).toBe(true);
    });

    it('writes add-to-store-NAR: the path info (no registration time, not ultimate, sigs, content address), then the NAR', () => {
      const { info, nar } = probePath();
      const request = Buffer.concat([encodeAddToStoreNar(info), nar]);
      expect(hex(request)).toBe(recording.addToStoreNar.request);
      const expected = new Serializer()
        .u64(9)
        .string(info.path)
        .string('')
        .string(info.narHash!)
        .strings([])
        .u64(0)
        .u64(info.narSize)
        .u64(0)
        .strings([])
        .string(info.ca!)
        .flush();
      expect(hex(request)).toBe(hex(Buffer.concat([expected, nar])));
    });
    testForReply('the add-to-store-NAR acknowledgement', recording.addToStoreNar.reply, (r) => decodeImportAck(r), undefined);

    it('writes build-paths: `<drv>!<outputs>`, then the build settings of this minor', () => {
      const bytes = encodeBuildPaths(recording.buildPathsDrvPath, ['out'], { maxSilentTime: 60, buildTimeout: 120, maxLogSize: 0 }, minor, STORE);
      expect(hex(bytes)).toBe(recording.buildPaths.request);
      const settings = ['3c00000000000000', '7800000000000000', '0000000000000000', ...(minor >= 3 ? ['0000000000000000', '0100000000000000'] : [])];
      expect(hex(bytes)).toBe('0600000000000000' + hex(new Serializer().strings([`${recording.buildPathsDrvPath}!out`]).flush()) + settings.join(''));
    });
    testForReply('a build-paths success', recording.buildPaths.reply, (r) => decodeBuildPathsReply(r), { status: 0, message: '' });
  });
}

describe('build-paths failures', () => {
  it("reads Nix's status and message, without colour codes or the error: prefix", async () => {
    const reply = new Serializer().u64(1).string("\u001b[31;1merror:\u001b[0m builder for 'x' failed with exit code 3").flush();
    const reader = readerOf(hex(reply));
    expect(await decodeBuildPathsReply(reader)).toEqual({ status: 1, message: "builder for 'x' failed with exit code 3" });
    expect(await reader.atEnd()).toBe(true);
  });
});

describe('build-derivation refuses what must not reach a builder', () => {
  const recording = nix28.minors['6']!;
  const drv = parseDrv(recording.drv, recording.drvPath);

  it('an output path outside the store', () => {
    const bad = { ...drv, outputs: { out: { path: '/tmp/evil', hashAlgo: '', hash: '' } } };
    expect(() => encodeBuildDerivation(recording.drvPath, bad, {}, 6, STORE)).toThrow(/Output out of/);
  });

  it('a negative or fractional limit', () => {
    expect(() => encodeBuildDerivation(recording.drvPath, drv, { buildTimeout: -1 }, 6, STORE)).toThrow(/buildTimeout must be a whole number/);
    expect(() => encodeBuildDerivation(recording.drvPath, drv, { maxSilentTime: 1.5 }, 6, STORE)).toThrow(/maxSilentTime/);
  });
});

describe('replies decoded from what is buffered', () => {
  const context = { minor: 6, storeDir: STORE };
  const pathOf = (i: number) => `/nix/store/${String(i).padStart(32, '0')}-p${i}`;
  const infos: PathInfo[] = Array.from({ length: 300 }, (_, i) => ({
    path: pathOf(i),
    ...(i % 2 === 0 ? { deriver: `${pathOf(i)}.drv` } : {}),
    references: i === 0 ? [] : [pathOf(i - 1), pathOf(0)],
    downloadSize: 1000 + i,
    narSize: 1000 + i,
    narHash: NAR_HASH,
    sigs: i % 3 === 0 ? ['cache:c2ln'] : [],
  }));
  /** Nix's layout for minor ≥ 4: path, deriver, references, sizes, hash, ca, sigs; the empty path ends it. */
  const reply = (items: readonly PathInfo[]) => {
    const wire = new Serializer();
    for (const info of items) {
      wire.string(info.path).string(info.deriver ?? '').strings(info.references).u64(info.downloadSize).u64(info.narSize);
      wire.string(info.narHash ?? '').string(info.ca ?? '').strings(info.sigs);
    }
    return wire.string('').flush();
  };

  it('reads 300 path infos from one chunk, pulling the source once', async () => {
    let pulls = 0;
    const source = (function* () {
      pulls++;
      yield reply(infos);
    })();
    const reader = new ServeReader(source, 'a builder');
    expect(await decodePathInfos(reader, context)).toStrictEqual(infos);
    expect(pulls).toBe(1);
    expect(reader.bufferedBytes).toBe(0);
  });

  it('reads the same 300 path infos however the reply is cut', async () => {
    const bytes = reply(infos);
    for (const size of [1, 7, 8, 13, 100, 1000, 32 * 1024]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
      const reader = new ServeReader(chunks, 'a builder');
      expect(await decodePathInfos(reader, context)).toStrictEqual(infos);
      expect(await reader.atEnd()).toBe(true);
    }
  });

  it('leaves the next reply where it was: two replies in one chunk', async () => {
    const bytes = Buffer.concat([reply(infos.slice(0, 2)), new Serializer().strings([pathOf(7)]).flush()]);
    for (const chunks of splits(bytes)) {
      const reader = new ServeReader(chunks, 'a builder');
      expect(await decodePathInfos(reader, context)).toStrictEqual(infos.slice(0, 2));
      expect(await decodeStorePaths(reader, 'the closure', STORE)).toEqual([pathOf(7)]);
      expect(await reader.atEnd()).toBe(true);
    }
  });

  /** The error a malformed reply raises whole, and the same one however it is cut. */
  async function sameFailureAtEverySplit(bytes: Buffer, decode: (reader: ServeReader) => Promise<unknown>, message: RegExp): Promise<void> {
    const whole = await decode(new ServeReader([bytes], 'liar')).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(whole).toBeInstanceOf(ServeProtocolError);
    expect((whole as Error).message).toMatch(message);
    for (const chunks of splits(bytes)) {
      await expect(decode(new ServeReader(chunks, 'liar'))).rejects.toThrow((whole as Error).message);
    }
  }

  it('refuses a reference outside the store at the same byte however the reply is cut', async () => {
    const bad = reply([infos[0]!, { ...infos[1]!, references: ['/etc/passwd'] }]);
    await sameFailureAtEverySplit(bad, (r) => decodePathInfos(r, context), /^Bad data from liar at byte \d+: .*"\/etc\/passwd", which is not a store path/);
  });

  it('refuses a deriver outside the store, a huge count, a long path and non-zero padding, however cut', async () => {
    const badDeriver = reply([{ ...infos[1]!, deriver: '/tmp/x.drv' }]);
    await sameFailureAtEverySplit(badDeriver, (r) => decodePathInfos(r, context), /"\/tmp\/x\.drv", which is not a store path/);
    const hugeCount = Buffer.concat([new Serializer().string(pathOf(1)).string('').u64(2 ** 40).flush()]);
    await sameFailureAtEverySplit(hugeCount, (r) => decodePathInfos(r, context), /the references claims 1099511627776 items/);
    const longPath = new Serializer().u64(5000).flush();
    await sameFailureAtEverySplit(longPath, (r) => decodePathInfos(r, context), /a path info claims 5000 bytes, more than the 4096 allowed/);
    const padded = Buffer.from(reply(infos.slice(0, 1)));
    padded[8 + pathOf(0).length] = 1;
    await sameFailureAtEverySplit(padded, (r) => decodePathInfos(r, context), /the padding of a path info is not zero/);
    const unsafe = new Serializer().u64(1).flush();
    unsafe.writeUInt32LE(0x200000, 4);
    await sameFailureAtEverySplit(unsafe, (r) => decodeStorePaths(r, 'the closure', STORE), /the length of the closure is 9007199254740993, larger than any sane value/);
  });

  it('fails a reply cut short with the stream-ended error naming the field, whatever was buffered', async () => {
    const bytes = reply(infos.slice(0, 3));
    for (let cut = 0; cut < bytes.length; cut++) {
      const chunks = [bytes.subarray(0, cut)];
      await expect(decodePathInfos(new ServeReader(chunks, 'gone'), context)).rejects.toThrow(/^The stream from gone ended while reading /);
    }
  });
});
