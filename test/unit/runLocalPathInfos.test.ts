import { describe, expect, it } from 'vitest';
import type { PathInfo } from '../../src/remote/serveClient.js';
import { LocalPathInfos } from '../../src/run/localPathInfos.js';
import type { StoreChannel } from '../../src/run/storeChannel.js';
import { outPath } from './runFakes.js';

/** A local store of paths with references; it records every question and refuses invalid paths as nix-store does. */
function localStore(refs: Record<string, string[]>) {
  const asked: string[] = [];
  const info = (name: string): PathInfo => ({ path: outPath(name), references: refs[name]!.map(outPath), downloadSize: 100, narSize: 100, narHash: `sha256:${name}`, sigs: [] });
  const nameOf = (path: string) => Object.keys(refs).find((n) => outPath(n) === path);
  const channel: StoreChannel = {
    queryValidPaths: (paths) => Promise.resolve(paths.filter((p) => nameOf(p) !== undefined)),
    queryClosure: (paths) => {
      asked.push(`closure ${paths.length}`);
      const seen = new Set<string>();
      const stack = paths.map((p) => {
        const name = nameOf(p);
        if (name === undefined) throw new Error(`path '${p}' is not valid`);
        return name;
      });
      for (let n = stack.pop(); n !== undefined; n = stack.pop()) if (!seen.has(n) && seen.add(n)) stack.push(...refs[n]!);
      return Promise.resolve([...seen].map(outPath));
    },
    queryPathInfos: (paths) => {
      asked.push(`infos ${paths.length}`);
      return Promise.resolve(paths.flatMap((p) => (nameOf(p) === undefined ? [] : [info(nameOf(p)!)])));
    },
    dumpNars: () => {
      throw new Error('not used');
    },
    addNars: () => Promise.reject(new Error('not used')),
    buildDerivation: () => Promise.reject(new Error('not used')),
    close: () => undefined,
  };
  return { channel, asked, info };
}

describe('LocalPathInfos', () => {
  const refs = { app: ['lib', 'data'], lib: ['libc'], libc: [], data: [], other: ['libc'] };

  it('answers the closure and path infos of what it looked ahead at without asking the store again', async () => {
    const { channel, asked, info } = localStore(refs);
    const infos = new LocalPathInfos();
    await infos.lookAhead(channel, [outPath('app')]);
    expect(asked).toEqual(['closure 1', 'infos 4']);
    const cached = infos.wrap(channel);
    expect(new Set(await cached.queryClosure([outPath('lib')], false))).toEqual(new Set([outPath('lib'), outPath('libc')]));
    expect(await cached.queryPathInfos([outPath('lib'), outPath('data')])).toEqual([info('lib'), info('data')]);
    expect(asked).toEqual(['closure 1', 'infos 4']);
  });

  it('asks the store about what it has not described, and only that', async () => {
    const { channel, asked, info } = localStore(refs);
    const infos = new LocalPathInfos();
    await infos.lookAhead(channel, [outPath('lib')]);
    const cached = infos.wrap(channel);
    expect(new Set(await cached.queryClosure([outPath('other')], false))).toEqual(new Set([outPath('other'), outPath('libc')]));
    expect(await cached.queryPathInfos([outPath('libc'), outPath('other')])).toEqual([info('libc'), info('other')]);
    expect(asked).toEqual(['closure 1', 'infos 2', 'closure 1', 'infos 1']);
    // Now described: asked once, not per job.
    await cached.queryPathInfos([outPath('other')]);
    expect(asked).toHaveLength(4);
  });

  it('leaves an invalid path to the store, which refuses it as before', async () => {
    const { channel, asked } = localStore(refs);
    const infos = new LocalPathInfos();
    await expect(infos.lookAhead(channel, [outPath('app'), outPath('gone')])).rejects.toThrow(/is not valid/);
    const cached = infos.wrap(channel);
    await expect(cached.queryClosure([outPath('app')], false)).resolves.toContain(outPath('lib'));
    await expect(cached.queryClosure([outPath('gone')], false)).rejects.toThrow(/is not valid/);
    expect(asked).toEqual(['closure 2', 'closure 1', 'closure 1']);
  });

  it('makes a question asked during the look-ahead wait for it rather than ask again', async () => {
    const { channel, asked } = localStore(refs);
    const infos = new LocalPathInfos();
    const ahead = infos.lookAhead(channel, [outPath('app')]);
    const closure = infos.wrap(channel).queryClosure([outPath('app')], false);
    await ahead;
    expect(new Set(await closure)).toEqual(new Set(['app', 'lib', 'libc', 'data'].map(outPath)));
    expect(asked).toEqual(['closure 1', 'infos 4']);
  });

  it('looks ahead over a channel it wraps itself, as the pool hands out (without waiting for itself)', async () => {
    const { channel, asked } = localStore(refs);
    const infos = new LocalPathInfos();
    await infos.lookAhead(infos.wrap(channel), [outPath('app')]);
    expect(asked).toEqual(['closure 1', 'infos 4']);
  });

  it('passes a closure with outputs to the store', async () => {
    const { channel, asked } = localStore(refs);
    const infos = new LocalPathInfos();
    await infos.lookAhead(channel, [outPath('app')]);
    await infos.wrap(channel).queryClosure([outPath('app')], true);
    expect(asked).toEqual(['closure 1', 'infos 4', 'closure 1']);
  });
});
