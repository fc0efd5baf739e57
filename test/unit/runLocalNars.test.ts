import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as NodeFs from 'node:fs';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { NarStream, PathInfo } from '../../src/remote/serveClient.js';
import { localNars } from '../../src/run/localNars.js';
import type { StoreChannel } from '../../src/run/storeChannel.js';
import { openOn } from '../support/openDescriptors.js';

/** Every path lstat'd, in order. */
const lstats = vi.hoisted(() => [] as string[]);
vi.mock('node:fs', async (original) => {
  const fs = await original<typeof NodeFs>();
  const lstatSync = ((path: NodeFs.PathLike, ...rest: never[]) => {
    lstats.push(path.toString());
    return fs.lstatSync(path, ...rest);
  }) as typeof fs.lstatSync;
  return { ...fs, default: { ...fs, lstatSync }, lstatSync };
});

const root = mkdtempSync(join(tmpdir(), 'offload-localnars-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A path whose files are readable here; its info as the local store would give it. */
function onDisk(name: string): PathInfo {
  const path = join(root, name);
  mkdirSync(path);
  writeFileSync(join(path, 'file'), `${name}\n`);
  const nar = execFileSync('nix-store', ['--dump', path]);
  return { path, deriver: undefined, references: [], narSize: nar.length, narHash: 'sha256:unused' } as unknown as PathInfo;
}

/** A path the local store has but whose files are not where its name says (a chroot store, say). */
function elsewhere(name: string): PathInfo {
  return { path: join(root, 'not-here', name), deriver: undefined, references: [], narSize: 8, narHash: 'sha256:unused' } as unknown as PathInfo;
}

/** The local channel: each dumpNars request it gets, and a NAR of 8 marked bytes per path. */
function channel(): { channel: StoreChannel; requests: string[][] } {
  const requests: string[][] = [];
  const fake = {
    async *dumpNars(infos: readonly PathInfo[], opts: { hash: string }): AsyncGenerator<NarStream> {
      expect(opts.hash).toBe('none');
      requests.push(infos.map((i) => i.path));
      for (const info of infos) {
        yield {
          info,
          chunks: (async function* () {
            yield [Buffer.from('channel!')];
          })(),
        };
      }
    },
  } as unknown as StoreChannel;
  return { channel: fake, requests };
}

async function drain(nars: AsyncIterable<NarStream>): Promise<{ path: string; bytes: Buffer; fromLocalFiles: boolean }[]> {
  const out = [];
  for await (const nar of nars) {
    const parts: Buffer[] = [];
    for await (const batch of nar.chunks) parts.push(...batch);
    out.push({ path: nar.info.path, bytes: Buffer.concat(parts), fromLocalFiles: nar.fromLocalFiles === true });
  }
  return out;
}

describe('localNars', () => {
  it('writes the NARs of readable paths from their files, in order, and asks the channel only for the others', async () => {
    const a = onDisk('a');
    const b = elsewhere('b');
    const c = elsewhere('c');
    const d = onDisk('d');
    const e = elsewhere('e');
    const { channel: local, requests } = channel();
    const nars = await drain(localNars(local, [a, b, c, d, e], true));
    expect(nars.map((n) => [n.path, n.fromLocalFiles])).toEqual([
      [a.path, true],
      [b.path, false],
      [c.path, false],
      [d.path, true],
      [e.path, false],
    ]);
    expect(nars[0]!.bytes.equals(execFileSync('nix-store', ['--dump', a.path]))).toBe(true);
    expect(nars[1]!.bytes.toString()).toBe('channel!');
    // Neighbours the channel sends go in one request.
    expect(requests).toEqual([[b.path, c.path], [e.path]]);
  });

  it('lstats a path once: the look that chose its files is its NAR root', async () => {
    const a = onDisk('g');
    lstats.length = 0;
    await drain(localNars(channel().channel, [a], true));
    expect(lstats).toEqual([a.path, join(a.path, 'file')]);
  });

  it('leaves no file open when its consumer abandons a NAR midway: moves on to the next, or stops the upload', async () => {
    const big = (name: string): PathInfo => {
      const path = join(root, name);
      mkdirSync(path);
      writeFileSync(join(path, 'big'), Buffer.alloc(2 * 1024 * 1024, 7));
      return { path, deriver: undefined, references: [], narSize: execFileSync('nix-store', ['--dump', path], { maxBuffer: 8 * 1024 * 1024 }).length, narHash: 'sha256:unused' } as unknown as PathInfo;
    };
    const [a, b] = [big('h'), big('i')];
    const nars = localNars(channel().channel, [a, b], true);
    const first = (await nars.next()).value as NarStream;
    await first.chunks[Symbol.asyncIterator]().next();
    expect(openOn(join(a.path, 'big'))).toBe(1);
    // The consumer takes the next NAR with the first unfinished.
    const second = (await nars.next()).value as NarStream;
    expect(openOn(join(a.path, 'big'))).toBe(0);
    await second.chunks[Symbol.asyncIterator]().next();
    expect(openOn(join(b.path, 'big'))).toBe(1);
    // The consumer stops (ServeClient.sendNars returns its source when a write fails).
    await nars.return(undefined);
    expect(openOn(join(b.path, 'big'))).toBe(0);
  });

  it('asks the channel for every path when the store’s files are not readable here', async () => {
    const a = onDisk('f');
    const { channel: local, requests } = channel();
    const nars = await drain(localNars(local, [a], false));
    expect(nars).toEqual([{ path: a.path, bytes: Buffer.from('channel!'), fromLocalFiles: false }]);
    expect(requests).toEqual([[a.path]]);
  });
});
