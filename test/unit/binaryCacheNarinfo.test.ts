import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseCacheUrl, UnsupportedCacheError } from '../../src/remote/binaryCache/cacheUrl.js';
import { NarInfoError, parseCacheInfo, parseNarInfo } from '../../src/remote/binaryCache/narinfo.js';
import { fingerprint, hasTrustedSignature, parseTrustedKeys } from '../../src/remote/binaryCache/signatures.js';
import { formatNixBase32, fromNixBase32, parseNixHash, toNixBase32 } from '../../src/storePath/nixHash.js';

// Written by `nix copy --to file://…?secret-key=…` (Nix 2.8) with a key from
// `nix-store --generate-binary-cache-key test-1 sk pk`.
const PUBLIC_KEY = 'test-1:BdwmMIimBQLHRTsvwwWqomJeWVX0KI1LCyZlbq/pnZY=';
const PATH = '/nix/store/slibkhvhyjljczff5wpdlx0y35vysdls-cached-input';
const NARINFO = `StorePath: ${PATH}
URL: nar/0g8pfa912dxp1x3w3szw80cnz8jr2hcz24rs3q4j800hsib8mxld.nar.xz
Compression: xz
FileHash: sha256:0g8pfa912dxp1x3w3szw80cnz8jr2hcz24rs3q4j800hsib8mxld
FileSize: 164
NarHash: sha256:1fgah65a5zb8cddd7czagsgk5sccfxdf0y3z3sdryhavw3vw61c6
NarSize: 168
References: 
Deriver: kqxjd5b9r96lhp9nly5rzyrz7f8dybvd-cached-input.drv
Sig: test-1:qSr/ZHi6iSNMYxJbaktw8FtvscJtqWyAfBrLEjV2k5sTm5ePE5HL1NFZ8Jl2+PyDHBWL6nscte9m+H3k2kmHDA==
`;
const noWarnings = (message: string) => {
  throw new Error(message);
};

describe('Nix hashes', () => {
  it('round-trips Nix base32 and reads base16, base64 and SRI forms', () => {
    const hex = '8605c3f7e05b419f9b1e7f78e05a778ce9329f7eeab3d35a6368fda28a81eab9'; // nix-hash --to-base16
    const b32 = '1fgah65a5zb8cddd7czagsgk5sccfxdf0y3z3sdryhavw3vw61c6';
    expect(toNixBase32(Buffer.from(hex, 'hex'))).toBe(b32);
    expect(fromNixBase32(b32, 32)!.toString('hex')).toBe(hex);
    const b64 = Buffer.from(hex, 'hex').toString('base64');
    for (const text of [`sha256:${b32}`, `sha256:${hex}`, `sha256:${b64}`, `sha256-${b64}`]) {
      expect(formatNixBase32(parseNixHash(text)!)).toBe(`sha256:${b32}`);
    }
    expect(parseNixHash('sha256:xyz')).toBeUndefined();
    expect(parseNixHash('blake9:00')).toBeUndefined();
    expect(fromNixBase32('e'.repeat(52), 32)).toBeUndefined();
  });
});

describe('narinfo', () => {
  it('parses what Nix writes', () => {
    const info = parseNarInfo(NARINFO, PATH, '/nix/store');
    expect(info).toMatchObject({ narSize: 168, fileSize: 164, compression: 'xz', references: [], deriver: '/nix/store/kqxjd5b9r96lhp9nly5rzyrz7f8dybvd-cached-input.drv' });
    expect(info.sigs).toHaveLength(1);
  });

  it('refuses a narinfo for another path, or with broken fields', () => {
    expect(() => parseNarInfo(NARINFO, `${PATH}x`, '/nix/store')).toThrow(NarInfoError);
    expect(() => parseNarInfo(NARINFO.replace('NarSize: 168', 'NarSize: lots'), PATH, '/nix/store')).toThrow(/NarSize/);
    expect(() => parseNarInfo(NARINFO.replace(/NarHash: .*/, 'NarHash: sha256:zz'), PATH, '/nix/store')).toThrow(/NarHash/);
    expect(() => parseNarInfo(NARINFO.replace('References: ', 'References: ../../etc/passwd'), PATH, '/nix/store')).toThrow(/reference/);
    expect(() => parseNarInfo(NARINFO.replace(/URL: .*\n/, ''), PATH, '/nix/store')).toThrow(/URL/);
  });

  it('reads nix-cache-info with Nix defaults', () => {
    expect(parseCacheInfo('StoreDir: /nix/store\n')).toEqual({ storeDir: '/nix/store', wantMassQuery: false, priority: 50 });
    expect(parseCacheInfo('StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n')).toEqual({ storeDir: '/nix/store', wantMassQuery: true, priority: 40 });
  });
});

describe('narinfo signatures', () => {
  const info = parseNarInfo(NARINFO, PATH, '/nix/store');

  it('accepts the signature Nix made, with the key Nix generated', () => {
    expect(fingerprint(info)).toBe(`1;${PATH};sha256:1fgah65a5zb8cddd7czagsgk5sccfxdf0y3z3sdryhavw3vw61c6;168;`);
    expect(hasTrustedSignature(info, parseTrustedKeys([PUBLIC_KEY], noWarnings))).toBe(true);
  });

  it('refuses unsigned narinfos, untrusted keys and anything the signature does not cover', () => {
    const keys = parseTrustedKeys([PUBLIC_KEY], noWarnings);
    expect(hasTrustedSignature({ ...info, sigs: [] }, keys)).toBe(false);
    expect(hasTrustedSignature(info, parseTrustedKeys([PUBLIC_KEY.replace('test-1', 'test-2')], noWarnings))).toBe(false);
    expect(hasTrustedSignature({ ...info, narSize: 169 }, keys)).toBe(false);
    expect(hasTrustedSignature({ ...info, references: ['/nix/store/slibkhvhyjljczff5wpdlx0y35vysdls-other'] }, keys)).toBe(false);
  });

  it('checks the fingerprint over full reference paths, comma-separated', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const raw = publicKey.export({ format: 'jwk' }).x!;
    const refs = ['/nix/store/00000000000000000000000000000000-a', '/nix/store/11111111111111111111111111111111-b'];
    const fp = `1;${PATH};${info.narHash};168;${refs.join(',')}`;
    const sig = `k:${sign(null, Buffer.from(fp), privateKey).toString('base64')}`;
    const keys = parseTrustedKeys([`k:${Buffer.from(raw, 'base64url').toString('base64')}`], noWarnings);
    expect(hasTrustedSignature({ ...info, references: refs, sigs: ['other:AAAA', sig] }, keys)).toBe(true);
  });

  it('warns about and skips malformed trusted keys', () => {
    const warnings: string[] = [];
    expect(parseTrustedKeys(['nonsense', 'k:AAAA'], (m) => warnings.push(m)).size).toBe(0);
    expect(warnings).toHaveLength(2);
  });
});

describe('substituter URLs', () => {
  it('reads http, https and file caches with their parameters', () => {
    expect(parseCacheUrl('https://cache.example/?priority=30')).toEqual({ url: 'https://cache.example', configured: 'https://cache.example/?priority=30', scheme: 'https', base: 'https://cache.example', priority: 30, trusted: false });
    expect(parseCacheUrl('file:///var/cache/nix?trusted=1')).toMatchObject({ scheme: 'file', base: '/var/cache/nix', trusted: true });
    expect(() => parseCacheUrl('s3://bucket')).toThrow(UnsupportedCacheError);
  });
});
