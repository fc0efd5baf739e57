import { describe, expect, it } from 'vitest';
import { ActivityType, InternalJsonLogger, ResultType } from '../../src/report/internalJson.js';
import { NomActivity } from '../../src/report/nomActivity.js';

function capture() {
  const lines: string[] = [];
  let buffer = '';
  const sink = {
    write(chunk: string) {
      buffer += chunk;
      const parts = buffer.split('\n');
      buffer = parts.pop()!;
      lines.push(...parts);
      return true;
    },
  };
  const parsed = () =>
    lines.map((line) => {
      expect(line.startsWith('@nix ')).toBe(true);
      return JSON.parse(line.slice('@nix '.length)) as Record<string, unknown>;
    });
  return { sink, lines, parsed, pending: () => buffer };
}

const drv = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.1.drv';

describe('InternalJsonLogger', () => {
  it('emits a remote build as Nix does: start (actBuild), log lines, phase, stop', () => {
    const { sink, parsed, pending } = capture();
    const log = new InternalJsonLogger(sink, { pid: 42 });
    const id = log.startBuild(drv, 'ruby');
    log.setPhase(id, 'buildPhase');
    log.logLine(id, 'compiling "main.c"\n');
    log.stopBuild(id);
    expect(pending()).toBe('');
    expect(parsed()).toEqual([
      {
        action: 'start',
        id,
        level: 3,
        type: 105,
        text: `building '${drv}' on 'ssh://ruby'`,
        parent: 0,
        fields: [drv, 'ssh://ruby', 1, 1],
      },
      { action: 'result', id, type: 104, fields: ['buildPhase'] },
      { action: 'result', id, type: 101, fields: ['compiling "main.c"'] },
      { action: 'stop', id },
    ]);
    expect(ActivityType.build).toBe(105);
    expect(ResultType.buildLogLine).toBe(101);
    expect(ResultType.setPhase).toBe(104);
  });

  it('leaves the machine empty for local builds', () => {
    const { sink, parsed } = capture();
    const log = new InternalJsonLogger(sink);
    log.startBuild(drv, 'local');
    log.startBuild(drv, 'this-machine', { local: true });
    expect(parsed()[0]).toMatchObject({ text: `building '${drv}'`, fields: [drv, '', 1, 1] });
    expect(parsed()[1]).toMatchObject({ text: `building '${drv}'`, fields: [drv, '', 1, 1] });
  });

  it('gives each activity a distinct exact-integer id carrying the pid, like Nix', () => {
    const { sink } = capture();
    const log = new InternalJsonLogger(sink, { pid: 0xfffff });
    const a = log.startBuild(drv, 'a');
    const b = log.startBuild(drv, 'b');
    expect(a).not.toBe(b);
    expect(Number.isSafeInteger(a) && Number.isSafeInteger(b)).toBe(true);
    expect(Math.floor(a / 2 ** 32)).toBe(0xfffff);
  });

  it('reports errors at level 0 with the error: prefix nom looks for', () => {
    const { sink, parsed } = capture();
    const log = new InternalJsonLogger(sink);
    log.error('builder for hello failed with exit code 2');
    log.error('error: already prefixed');
    expect(parsed()).toEqual([
      { action: 'msg', level: 0, msg: 'error: builder for hello failed with exit code 2' },
      { action: 'msg', level: 0, msg: 'error: already prefixed' },
    ]);
  });

  it('keeps one JSON object per line whatever the log line holds', () => {
    const { sink, parsed, lines } = capture();
    const log = new InternalJsonLogger(sink);
    const id = log.startBuild(drv, 'h');
    log.logLine(id, 'a\nb\u0000\u001b[31mred\ud800');
    expect(lines).toHaveLength(2);
    expect(parsed()[1]).toMatchObject({ fields: ['a\nb\u0000\u001b[31mred\ud800'] });
  });

  it('stops an activity once, and stopAll closes what is still open', () => {
    const { sink, parsed } = capture();
    const log = new InternalJsonLogger(sink);
    const a = log.startBuild(drv, 'a');
    const b = log.startBuild(drv, 'b');
    log.stopBuild(a);
    log.stopBuild(a);
    log.stopAll();
    expect(parsed().filter((m) => m.action === 'stop').map((m) => m.id)).toEqual([a, b]);
  });
});

describe('fetches and copies for nom', () => {
  const CACHE = 'https://cache.example.org';
  const zlib = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-zlib-1.3';
  const zlibDev = '/nix/store/cccccccccccccccccccccccccccccccc-zlib-1.3-dev';

  it('shows a fetch as Nix does a substitution: actSubstitute holding an actCopyPath per path, here or on a builder', () => {
    const { sink, parsed } = capture();
    const nom = new NomActivity(new InternalJsonLogger(sink, { pid: 7 }));
    nom.know([{ id: drv, transfer: { paths: [zlib, zlibDev], from: CACHE } }]);
    nom.apply({ type: 'jobStarted', time: 0, jobId: drv, name: 'zlib-1.3', host: 'caches', attempt: 1, action: 'fetch' });
    const [sub, copy] = parsed();
    expect(sub).toMatchObject({ action: 'start', level: 0, type: ActivityType.substitute, text: '', parent: 0, fields: [zlib, CACHE] });
    expect(copy).toMatchObject({ action: 'start', level: 3, type: ActivityType.copyPath, text: `copying path '${zlib}' from '${CACHE}'`, parent: sub!.id, fields: [zlib, CACHE, 'local'] });
    expect(parsed().filter((m) => m.action === 'start')).toHaveLength(4);
    // A builder that could not fetch it: the same fetch goes on here.
    nom.apply({ type: 'jobFinished', time: 1, jobId: drv, name: 'zlib-1.3', host: 'caches', status: 'fetched', seconds: 1, action: 'fetch', bytes: 10, from: CACHE });
    const stops = parsed().filter((m) => m.action === 'stop').map((m) => m.id);
    expect(stops.sort()).toEqual(parsed().filter((m) => m.action === 'start').map((m) => m.id).sort());
    nom.apply({ type: 'jobStarted', time: 2, jobId: drv, name: 'zlib-1.3', host: 'ruby', attempt: 2, action: 'fetch' });
    expect(parsed().at(-1)).toMatchObject({ type: ActivityType.copyPath, text: `copying path '${zlibDev}' from '${CACHE}' to 'ssh://ruby'`, fields: [zlibDev, CACHE, 'ssh://ruby'] });
    expect(parsed().some((m) => m.type === ActivityType.build)).toBe(false);
  });

  it('shows a copy from a builder as a copy from its ssh:// store', () => {
    const { sink, parsed } = capture();
    const nom = new NomActivity(new InternalJsonLogger(sink));
    nom.know([{ id: drv, transfer: { paths: [zlib], from: 'ruby' } }]);
    nom.apply({ type: 'jobStarted', time: 0, jobId: drv, name: 'zlib-1.3', host: 'caches', attempt: 1, action: 'copy' });
    expect(parsed()).toEqual([expect.objectContaining({ type: ActivityType.copyPath, text: `copying path '${zlib}' from 'ssh://ruby'`, fields: [zlib, 'ssh://ruby', 'local'] })]);
    nom.stopAll();
    expect(parsed().at(-1)).toEqual({ action: 'stop', id: parsed()[0]!.id });
  });
});
