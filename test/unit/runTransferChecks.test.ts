import { describe, expect, it } from 'vitest';
import type { NarStream, PathInfo } from '../../src/remote/serveClient.js';
import { UntrustedReplyError } from '../../src/remote/untrustedReplyError.js';
import { PathLocations } from '../../src/run/pathLocations.js';
import type { ChannelSource, StoreChannel } from '../../src/run/storeChannel.js';
import { PathTransfers } from '../../src/run/transfers.js';

const p = (name: string) => `/nix/store/${'a'.repeat(32)}-${name}`;

/** A store holding `infos`; `closureOf` answers closure queries (a liar can add to them). */
function fakeStore(infos: PathInfo[], closureOf: (paths: string[]) => string[]) {
  const valid = new Map(infos.map((i) => [i.path, i]));
  const added: string[] = [];
  const hashChecks: string[] = [];
  const channel: StoreChannel = {
    queryValidPaths: async (paths) => paths.filter((x) => valid.has(x)),
    queryClosure: async (paths) => closureOf(paths),
    queryPathInfos: async (paths) => paths.flatMap((x) => (valid.has(x) ? [valid.get(x)!] : [])),
    async *dumpNars(list, opts) {
      hashChecks.push(opts.hash);
      for (const info of list) yield { info, chunks: (async function* () { yield [Buffer.alloc(info.narSize)]; })() };
    },
    addNars: async (nars: AsyncIterable<NarStream>) => {
      for await (const nar of nars) {
        for await (const _ of nar.chunks) void _;
        added.push(nar.info.path);
      }
    },
    buildDerivation: async () => {
      throw new Error('not here');
    },
    close: () => undefined,
  };
  return { channel, added, hashChecks };
}

const info = (path: string, references: string[] = []): PathInfo => ({ path, references, downloadSize: 8, narSize: 8, sigs: [] });

function setUp(builderClosure: (paths: string[]) => string[], builderInfos: PathInfo[]) {
  const builder = fakeStore(builderInfos, builderClosure);
  const local = fakeStore([], () => []);
  const channels: ChannelSource = {
    acquire: async (host) => (host === 'liar' ? builder.channel : local.channel),
    release: () => undefined,
    discard: () => undefined,
  };
  const locations = new PathLocations();
  locations.add(p('out'), 'liar');
  const transfers = new PathTransfers(locations, channels, { buildersUseSubstitutes: false, expected: (x) => x === p('out') || x === p('dep') });
  return { transfers, local, locations, builder };
}

describe('PathTransfers against a builder that lies', () => {
  it('copies what was asked for and its expected closure', async () => {
    const { transfers, local } = setUp(() => [p('dep'), p('out')], [info(p('out'), [p('dep')]), info(p('dep'))]);
    const report = await transfers.ensure('local', local.channel, [p('out')]);
    expect(local.added).toEqual([p('dep'), p('out')]);
    expect(report.bytes).toBe(16);
  });

  it('leaves the hash of a NAR copied back to the local store, and hashes one on its way to another builder itself', async () => {
    const back = setUp(() => [p('dep'), p('out')], [info(p('out'), [p('dep')]), info(p('dep'))]);
    await back.transfers.ensure('local', back.local.channel, [p('out')]);
    expect(back.builder.hashChecks).toEqual(['receiver']);
    // Another builder's refusal would be one builder's word against another's.
    const across = setUp(() => [p('dep'), p('out')], [info(p('out'), [p('dep')]), info(p('dep'))]);
    const other = fakeStore([], () => []);
    await across.transfers.ensure('other', other.channel, [p('out')]);
    expect(across.builder.hashChecks).toEqual(['here']);
    expect(other.added).toEqual([p('dep'), p('out')]);
  });

  it('refuses a closure reply with a path the run never asked for, before anything is sent', async () => {
    const { transfers, local, locations } = setUp(() => [p('out'), p('glibc-2.39')], [info(p('out'), [p('glibc-2.39')]), info(p('glibc-2.39'))]);
    const error = await transfers.ensure('local', local.channel, [p('out')]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UntrustedReplyError);
    expect((error as UntrustedReplyError).path).toBe(p('glibc-2.39'));
    expect((error as Error).message).toMatch(/liar cannot be trusted: its closure reply names a path this run never asked for/);
    expect(local.added).toEqual([]);
    expect(locations.has(p('out'), 'local')).toBe(false);
  });

  it('refuses a closure reply that renames the path it was asked about', async () => {
    const { transfers, local } = setUp(() => [p('glibc-2.39')], [info(p('glibc-2.39'))]);
    const error = await transfers.ensure('local', local.channel, [p('out')]).catch((e: unknown) => e);
    expect((error as UntrustedReplyError).path).toBe(p('out'));
    expect((error as Error).message).toMatch(/leaves out a path it was asked about/);
    expect(local.added).toEqual([]);
  });

  it('refuses path infos whose references leave the closure it gave', async () => {
    const { transfers, local } = setUp(() => [p('out')], [info(p('out'), [p('dep')])]);
    const error = await transfers.ensure('local', local.channel, [p('out')]).catch((e: unknown) => e);
    expect((error as UntrustedReplyError).path).toBe(p('dep'));
    expect(local.added).toEqual([]);
  });
});
