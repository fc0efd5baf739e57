import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors/offloadError.js';
import { ChannelPool, ChannelPoolClosedError } from '../../src/run/channelPool.js';
import type { StoreChannel } from '../../src/run/storeChannel.js';

interface Opened extends StoreChannel {
  id: number;
  closed: boolean;
  usable: boolean;
}

function pool(maxIdle = 2) {
  const opened: Opened[] = [];
  const p = new ChannelPool((host) => {
    if (host === 'dead') return Promise.reject(new Error('unreachable'));
    const channel = { id: opened.length, closed: false, usable: true, close: () => void (channel.closed = true) } as Opened;
    opened.push(channel);
    return Promise.resolve(channel);
  }, maxIdle);
  return { p, opened };
}

/** A channel that only says whether it still substitutes (what the pool looks at). */
function channel(id: number, substitutes = true): StoreChannel & { id: number; substitutes: boolean; closed: boolean } {
  const c = {
    id,
    substitutes,
    closed: false,
    usable: true,
    queryValidPaths: async () => [],
    queryClosure: async () => [],
    queryPathInfos: async () => [],
    dumpNars: () => {
      throw new Error('not used');
    },
    addNars: async () => 0,
    buildDerivation: async () => {
      throw new Error('not used');
    },
    close: () => {
      c.closed = true;
    },
  };
  return c;
}

describe('ChannelPool', () => {
  it('reuses an idle channel and opens a new one only when every open one is busy', async () => {
    const { p, opened } = pool();
    const a = await p.acquire('ruby');
    const b = await p.acquire('ruby');
    expect(opened).toHaveLength(2);
    p.release('ruby', a);
    expect(await p.acquire('ruby')).toBe(a);
    expect(await p.acquire('kana')).not.toBe(b);
    expect(p.openCount()).toBe(3);
  });

  it('keeps at most maxIdle idle channels per host and closes the rest', async () => {
    const { p, opened } = pool(1);
    const [a, b] = [await p.acquire('ruby'), await p.acquire('ruby')];
    p.release('ruby', a);
    p.release('ruby', b);
    expect(opened.map((c) => c.closed)).toEqual([false, true]);
    expect(p.openCount()).toBe(1);
  });

  it('skips idle channels that broke meanwhile', async () => {
    const { p, opened } = pool();
    const a = (await p.acquire('ruby')) as Opened;
    p.release('ruby', a);
    a.usable = false;
    const b = await p.acquire('ruby');
    expect(b).not.toBe(a);
    expect(a.closed).toBe(true);
    expect(opened).toHaveLength(2);
  });

  it('closes a host’s idle channels when its connection fails, and leaves busy ones to fail on their own', async () => {
    const { p } = pool();
    const [idle, busy] = [(await p.acquire('ruby')) as Opened, (await p.acquire('ruby')) as Opened];
    p.release('ruby', idle);
    p.dropHost('ruby');
    expect([idle.closed, busy.closed]).toEqual([true, false]);
    expect(await p.acquire('ruby')).not.toBe(idle);
  });

  it('passes on a failure to open, and after closeAll closes busy channels and opens nothing', async () => {
    const { p } = pool();
    await expect(p.acquire('dead')).rejects.toThrow('unreachable');
    const busy = (await p.acquire('ruby')) as Opened;
    p.closeAll();
    expect(busy.closed).toBe(true);
    p.release('ruby', busy);
    expect(p.openCount()).toBe(0);
    const refused = await p.acquire('ruby').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ChannelPoolClosedError);
    expect((refused as ChannelPoolClosedError).exitCode).toBe(ExitCode.interrupted);
  });

  it('reuses an idle channel, and for substitution only one that still substitutes', async () => {
    let opened = 0;
    const made: Array<ReturnType<typeof channel>> = [];
    const pool = new ChannelPool(async () => {
      const c = channel(++opened);
      made.push(c);
      return c;
    });
    const first = await pool.acquire('ruby');
    // It builds something: Nix's serve stops substituting for the rest of its life.
    made[0]!.substitutes = false;
    pool.release('ruby', first);
    expect(await pool.acquire('ruby', { substitute: true })).not.toBe(first);
    expect(opened).toBe(2);
    expect(await pool.acquire('ruby')).toBe(first);
    expect(opened).toBe(2);
  });

  it('gives a channel opened ahead (warm) to the next acquire, which waits for it rather than opening another', async () => {
    let open: (channel: StoreChannel) => void = () => undefined;
    let opened = 0;
    const warmPool = new ChannelPool(() => {
      opened++;
      return opened === 1 ? new Promise<StoreChannel>((resolve) => (open = resolve)) : Promise.resolve(channel(opened));
    });
    warmPool.warm('ruby');
    const taking = warmPool.acquire('ruby');
    const first = channel(1);
    open(first);
    expect(await taking).toBe(first);
    expect(opened).toBe(1);
    expect(warmPool.openCount()).toBe(1);
  });

  it('puts a warm channel nobody asked for yet into the idle ones, and closes it with the pool', async () => {
    const { p, opened } = pool();
    p.warm('ruby');
    await new Promise((resolve) => setImmediate(resolve));
    expect(await p.acquire('ruby')).toBe(opened[0]);
    expect(opened).toHaveLength(1);
    p.warm('kana');
    p.closeAll();
    await new Promise((resolve) => setImmediate(resolve));
    expect(opened[1]?.closed).toBe(true);
    await expect(p.acquire('kana')).rejects.toBeInstanceOf(ChannelPoolClosedError);
  });

  it("gives a warm channel's failure to the next acquire, as its own; the one after opens anew", async () => {
    let attempts = 0;
    const failingOnce = new ChannelPool(() => (++attempts === 1 ? Promise.reject(new Error('unreachable')) : Promise.resolve(channel(attempts))));
    failingOnce.warm('ruby');
    await new Promise((resolve) => setImmediate(resolve));
    await expect(failingOnce.acquire('ruby')).rejects.toThrow('unreachable');
    expect((await failingOnce.acquire('ruby')) as unknown).toMatchObject({ id: 2 });
    expect(attempts).toBe(2);
  });

  it('gives the next acquire an idle channel that is ready already, without readying another', async () => {
    const prepared: number[] = [];
    const lazy = Object.assign(channel(1), { ready: false, prepare: () => void prepared.push(1) });
    const ready = channel(2);
    const p = new ChannelPool(async () => channel(9));
    p.adopt('local', ready);
    p.adopt('local', lazy);
    p.prepare('local');
    expect(prepared).toEqual([]);
    expect(await p.acquire('local')).toBe(ready);
  });

  it('readies the channel the next acquire gets (the last usable idle one, else the next warm one), and opens none for it', async () => {
    const prepared: number[] = [];
    const preparing = (id: number) => Object.assign(channel(id), { ready: false, prepare: () => void prepared.push(id) });
    let opened = 0;
    const p = new ChannelPool(async () => preparing(++opened));
    p.prepare('local');
    expect(opened).toBe(0);
    const [a, b] = [await p.acquire('local'), await p.acquire('local')];
    p.release('local', a);
    p.release('local', b);
    (a as { usable: boolean }).usable = true;
    (b as { usable: boolean }).usable = false;
    p.prepare('local');
    expect(prepared).toEqual([1]);
    expect(await p.acquire('local')).toBe(a);
    p.warm('local');
    p.prepare('local');
    expect(await p.acquire('local')).toMatchObject({ id: 3 });
    expect(prepared).toEqual([1, 3]);
    expect(opened).toBe(3);
  });

  it('takes in a channel opened elsewhere (adopt) as an idle one, and closes it at once when the pool is closed', async () => {
    const { p, opened } = pool();
    const given = channel(7);
    p.adopt('local', given);
    expect(await p.acquire('local')).toBe(given);
    expect(opened).toHaveLength(0);
    p.closeAll();
    expect(given.closed).toBe(true);
    const late = channel(8);
    p.adopt('local', late);
    expect(late.closed).toBe(true);
  });
});
