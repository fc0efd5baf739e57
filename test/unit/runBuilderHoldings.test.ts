import { describe, expect, it } from 'vitest';
import { queryBuilderHoldings } from '../../src/run/builderHoldings.js';
import type { ChannelSource, StoreChannel } from '../../src/run/storeChannel.js';

const out = (name: string) => `/nix/store/0123456789abcdfghijklmnpqrsvwxyz-${name}`;

/** Builders whose Nix holds `valid`; records which hosts a serve channel was opened to and what it was asked. */
function builders(valid: Record<string, string[]>) {
  const opened: string[] = [];
  const asked = new Map<string, string[]>();
  const channels: ChannelSource = {
    async acquire(host) {
      opened.push(host);
      return {
        async queryValidPaths(paths: string[]) {
          asked.set(host, paths);
          return paths.filter((p) => valid[host]?.includes(p));
        },
        async queryPathInfos(paths: string[]) {
          return paths.map((path) => ({ path, narSize: 1000, narHash: '', references: [], deriver: '', ultimate: false, sigs: [], ca: '' }));
        },
      } as unknown as StoreChannel;
    },
    release() {},
    discard() {},
  };
  return { channels, opened, asked };
}

describe('queryBuilderHoldings', () => {
  const paths = [out('a'), out('b'), out('c')];

  it('asks Nix only about what a builder has on disk, and starts no nix-store where it has none of them', async () => {
    const b = builders({ aquamarine: [out('b')], ruby: [] });
    const onDisk: Record<string, string[]> = { aquamarine: [out('b'), out('c')], ruby: [] };
    const holdings = await queryBuilderHoldings({ channels: b.channels, present: async (host) => onDisk[host] }, ['aquamarine', 'ruby'], paths);
    expect(b.opened).toEqual(['aquamarine']);
    // c is on disk but not valid (a build in progress, a failed one's leftovers): Nix's word decides.
    expect(b.asked.get('aquamarine')).toEqual([out('b'), out('c')]);
    expect([...holdings.held]).toEqual([[out('b'), 'aquamarine']]);
    expect(holdings.narSize.get(out('b'))).toBe(1000);
    expect(holdings.late).toEqual([]);
  });

  it('asks Nix about every path when a builder cannot tell what it has on disk', async () => {
    const b = builders({ ruby: [out('a')] });
    const holdings = await queryBuilderHoldings({ channels: b.channels, present: async () => undefined }, ['ruby'], paths);
    expect(b.asked.get('ruby')).toEqual(paths);
    expect([...holdings.held]).toEqual([[out('a'), 'ruby']]);
  });

  it('counts a builder whose disk check fails as not answering, without asking its Nix', async () => {
    const b = builders({ ruby: [out('a')] });
    const holdings = await queryBuilderHoldings({ channels: b.channels, present: () => Promise.reject(new Error('connection refused')) }, ['ruby'], paths);
    expect(b.opened).toEqual([]);
    expect(holdings.late).toEqual(['ruby']);
  });

  it('asks Nix directly without a disk check', async () => {
    const b = builders({ ruby: [out('c')] });
    const holdings = await queryBuilderHoldings({ channels: b.channels }, ['ruby'], paths);
    expect(b.asked.get('ruby')).toEqual(paths);
    expect([...holdings.held]).toEqual([[out('c'), 'ruby']]);
  });
});
