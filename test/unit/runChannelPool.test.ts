import { describe, expect, it } from 'vitest';
import { ChannelPool } from '../../src/run/channelPool.js';
import type { StoreChannel } from '../../src/run/storeChannel.js';

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
});
