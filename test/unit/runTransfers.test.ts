import { describe, expect, it } from 'vitest';
import { PathLocations } from '../../src/run/pathLocations.js';
import { MissingPathError, PathTransfers } from '../../src/run/transfers.js';
import { FakeHosts, gate, narOf, outPath } from './runFakes.js';

function transfers(buildersUseSubstitutes = false) {
  const hosts = new FakeHosts(['ruby', 'kana']);
  const locations = new PathLocations();
  const put = (host: string, ...names: string[]) => {
    for (const name of names) {
      hosts.stores.get(host)!.add(outPath(name));
      locations.add(outPath(name), host);
    }
  };
  return { hosts, locations, put, t: new PathTransfers(locations, hosts, { buildersUseSubstitutes }) };
}

describe('PathTransfers', () => {
  it('streams each path from the host that holds it, builder to builder, and records the copies', async () => {
    const { hosts, locations, put, t } = transfers();
    put('local', 'src');
    put('ruby', 'lib');
    const report = await t.ensure('kana', await hosts.acquire('kana'), [outPath('src'), outPath('lib')]);
    expect(report).toEqual({ sent: [outPath('src'), outPath('lib')], substituted: [], bytes: narOf('local', outPath('src')).length + narOf('ruby', outPath('lib')).length });
    expect(hosts.streamed.sort()).toEqual(['local→kana src', 'ruby→kana lib']);
    expect(locations.hostsOf(outPath('lib')).sort()).toEqual(['kana', 'ruby']);
  });

  it('sends nothing the target already has, by this run’s record or by its own store', async () => {
    const { hosts, locations, put, t } = transfers();
    put('ruby', 'lib');
    put('kana', 'lib');
    hosts.stores.get('kana')!.add(outPath('other'));
    put('local', 'other');
    expect(await t.ensure('kana', await hosts.acquire('kana'), [outPath('lib'), outPath('other')])).toEqual({ sent: [], substituted: [], bytes: 0 });
    expect(hosts.streamed).toEqual([]);
    expect(locations.has(outPath('other'), 'kana')).toBe(true);
  });

  it('lets two jobs needing the same input on one host share one transfer', async () => {
    const { hosts, put, t } = transfers();
    put('ruby', 'lib');
    const held = gate();
    hosts.exportGates.set('ruby', held.promise);
    const first = t.ensure('kana', await hosts.acquire('kana'), [outPath('lib')]);
    const second = t.ensure('kana', await hosts.acquire('kana'), [outPath('lib')]);
    held.open();
    const reports = await Promise.all([first, second]);
    expect(hosts.streamed).toEqual(['ruby→kana lib']);
    expect(reports.map((r) => r.sent)).toEqual([[outPath('lib')], []]);
  });

  it('lets a builder fetch from its substituters first when builders use substitutes', async () => {
    const { hosts, put, t } = transfers(true);
    put('local', 'glibc', 'src');
    hosts.substitutable.set('kana', new Set([outPath('glibc')]));
    const report = await t.ensure('kana', await hosts.acquire('kana'), [outPath('glibc'), outPath('src')]);
    expect(report).toEqual({ sent: [outPath('src')], substituted: [outPath('glibc')], bytes: narOf('local', outPath('src')).length });
    expect(hosts.streamed).toEqual(['local→kana src']);
  });

  it('says a path is lost when the only host that held it went down', async () => {
    const { hosts, locations, put, t } = transfers();
    put('ruby', 'lib');
    locations.forgetHost('ruby');
    const error = await t.ensure('kana', await hosts.acquire('kana'), [outPath('lib')]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MissingPathError);
    expect((error as MissingPathError).lost).toBe(true);
    expect((error as Error).message).toMatch(/no host holds it any more \(its builder went down\)/);
    const never = await t.ensure('kana', await hosts.acquire('kana'), [outPath('nowhere')]).catch((e: unknown) => e);
    expect((never as MissingPathError).lost).toBe(false);
  });

  it('gives back a source channel after a clean copy and discards it after a failed one', async () => {
    const { hosts, put, t } = transfers();
    put('ruby', 'lib', 'gone');
    await t.ensure('kana', await hosts.acquire('kana'), [outPath('lib')]);
    expect(hosts.openChannels.get('ruby')).toBe(1);
    hosts.stores.get('ruby')!.delete(outPath('gone'));
    // The builder names the path in its closure but has no info for it: a reply it cannot back.
    await expect(t.ensure('local', await hosts.acquire('local'), [outPath('gone')])).rejects.toThrow(/ruby cannot be trusted/);
    expect(hosts.openChannels.get('ruby')).toBe(1);
  });
});
