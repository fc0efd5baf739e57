import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareDrvText, decodeDrvBytes, encodeDrvText } from '../../src/drv/drvBytes.js';
import { DrvJsonError, DrvParseError } from '../../src/drv/errors.js';
import { loadDrvClosure } from '../../src/drv/loadClosure.js';
import { readShowDerivationJson } from '../../src/drv/showDerivationJson.js';
import { encodeBuildDerivation } from '../../src/remote/serveCodec/messages.js';

const DRV = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-bytes.drv';
const OUT = '/nix/store/abcdfghijklmnpqrsvwxyz0123456789-bytes';
/** ff fe: never UTF-8; c3 a9: é; 80: a stray continuation; ed a0 80: an encoded surrogate (not UTF-8); ef bb bf: a BOM. */
const RAW = Buffer.from([0xff, 0xfe, 0x41, 0xc3, 0xa9, 0x80, 0xed, 0xa0, 0x80, 0xef, 0xbb, 0xbf, 0x7a]);

function drvFile(value: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`Derive([("out","${OUT}","","")],[],[],"x86_64-linux","/bin/sh",["-c","printf %s \\"$raw\\" > $out"],[("name","bytes"),("out","${OUT}"),("raw","`),
    value,
    Buffer.from('")])'),
  ]);
}

describe('derivation strings are bytes', () => {
  it('decodes any bytes to a string that encodes back to exactly those bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => encodeDrvText(decodeDrvBytes(bytes)).equals(Buffer.from(bytes))));
    expect(encodeDrvText(decodeDrvBytes(RAW))).toEqual(RAW);
  });

  it('reads valid UTF-8 as the text it is, a leading BOM and astral characters included', () => {
    const text = '\ufeffcafé 💀 ✓';
    expect(decodeDrvBytes(Buffer.from(text, 'utf8'))).toBe(text);
    expect(encodeDrvText(text)).toEqual(Buffer.from(text, 'utf8'));
    expect(decodeDrvBytes(RAW)).toBe('\udcff\udcfeAé\udc80\udced\udca0\udc80\ufeffz');
  });

  it('orders strings by their bytes, as Nix orders env names', () => {
    expect(compareDrvText('\udcff', 'é')).toBeGreaterThan(0);
    expect(compareDrvText('Z', 'a')).toBeLessThan(0);
  });

  it('sends a non-UTF-8 env value to the builder byte for byte', async () => {
    const set = await loadDrvClosure([DRV], { readFile: () => Promise.resolve(drvFile(RAW)) });
    const message = encodeBuildDerivation(DRV, set.drvs.get(DRV)!, {}, 6, '/nix/store');
    const framed = Buffer.concat([Buffer.alloc(8), RAW, Buffer.alloc(3)]);
    framed.writeBigUInt64LE(BigInt(RAW.length));
    expect(message.includes(framed)).toBe(true);
    expect(message.includes(Buffer.from([0xef, 0xbf, 0xbd]))).toBe(false);
  });

  it('counts the byte offset of a parse error in the file\'s bytes', async () => {
    const broken = Buffer.concat([drvFile(RAW).subarray(0, -2), Buffer.from('!')]);
    const error = await loadDrvClosure([DRV], { readFile: () => Promise.resolve(broken) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DrvParseError);
    expect((error as DrvParseError).byteOffset).toBe(broken.length - 1);
  });

  it('refuses show-derivation JSON whose strings hold unpaired surrogates, naming the key', () => {
    const json = JSON.stringify({
      [DRV]: { outputs: { out: { path: OUT } }, inputSrcs: [], inputDrvs: {}, system: 'x86_64-linux', builder: '/bin/sh', args: [], env: { raw: 'a\udc80' } },
    });
    expect(() => readShowDerivationJson(json, 'dag.json')).toThrow(DrvJsonError);
    expect(() => readShowDerivationJson(json, 'dag.json')).toThrow(
      `derivation JSON dag.json at "${DRV}".env["raw"]: the string holds the unpaired surrogate \\udc80 at character 1, which stands for no bytes (Nix writes valid UTF-8).`,
    );
  });
});
