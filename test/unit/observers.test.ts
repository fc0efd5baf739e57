import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { BuildObservers, type BuildOutputOptions } from '../../src/cli/buildObservers.js';
import { SqliteBuildHistory } from '../../src/history/sqliteBuildHistory.js';
import { APP, HELLO, capture, hosts, jobs, result, script } from './observersFixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'offload-observers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Plays the script through BuildObservers as the executor would, then finishes the run. */
async function play(opts: Partial<BuildOutputOptions>, tty = false, history?: string) {
  const stdout = capture();
  const stderr = capture(tty);
  let clock = 0;
  const observers = new BuildObservers({ color: false, ...opts }, { stdout, stderr });
  if (history !== undefined) await observers.openHistory({ kind: 'local' }, { historyFile: history }, []);
  const onEvent = observers.begin({ jobs, hosts, now: () => clock });
  for (const step of script) {
    clock = step.at;
    if (step.log !== undefined) observers.log(step.log);
    if (step.event) onEvent(step.event);
  }
  await observers.finish({ ...result, outputs: { [HELLO]: { out: '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.1' } } });
  return { stdout, stderr };
}

describe('BuildObservers on stderr that is not a terminal', () => {
  it('prints one plain line per event, build logs with their prefix, failures with their log tail', async () => {
    const { stdout, stderr } = await play({});
    expect(stderr.lines()).toEqual([
      '[0.1s] ruby: started hello-2.12.1 (est 1m30s)',
      '[ruby] hello-2.12.1> compiling hello.c',
      '[42.3s] ruby: hello-2.12.1 built in 42s',
      '[42.4s] kana: started app-1.0 (est 15s)',
      '[kana] app-1.0> app.c:3: error: oops',
      '[43.0s] offload: ruby is down (connection lost); its jobs go to other machines; retrying it in 30 s',
      '[43.0s] ruby: down: connection lost',
      '[43.4s] kana: app-1.0 failed: builder failed with exit code 3',
      `[43.4s] offload: building ${APP} on kana failed: builder failed with exit code 3`,
      'last 1 log lines of app-1.0:',
      '  app.c:3: error: oops',
      '[43.4s] offload: 1 built, 1 failed in 43.4 s',
    ]);
    expect(stdout.text()).toBe('/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.1\n');
  });

  it('says every 10 s how far a long copy is, so several GiB never look like a hang', async () => {
    const stdout = capture();
    const stderr = capture();
    let clock = 0;
    const observers = new BuildObservers({ color: false }, { stdout, stderr });
    const onEvent = observers.begin({ jobs, hosts, now: () => clock });
    const MiB = 1024 ** 2;
    clock = 1;
    onEvent({ type: 'transferStarted', time: 1, transferId: 1, from: 'ruby', to: 'local', paths: 2, bytes: 2500 * MiB });
    // Progress events come a few times a second; 100 MiB/s for 25 s.
    for (let t = 1.25; t <= 26; t += 0.25) {
      clock = t;
      onEvent({ type: 'transferProgress', time: t, transferId: 1, bytes: Math.round((t - 1) * 100 * MiB), total: 2500 * MiB });
    }
    onEvent({ type: 'transferFinished', time: 26, transferId: 1, from: 'ruby', to: 'local', bytes: 2500 * MiB, seconds: 25 });
    await observers.finish({ ...result, records: [], outputs: {} });
    expect(stderr.lines().slice(0, 4)).toEqual([
      '[1.0s] ruby -> local: copying 2 paths (2.44 GiB)',
      '[11.0s] ruby -> local: 1000.00 MiB of 2.44 GiB, 100.00 MiB/s, ETA 15s',
      '[21.0s] ruby -> local: 1.95 GiB of 2.44 GiB, 100.00 MiB/s, ETA 5s',
      '[26.0s] ruby -> local: copied 2.44 GiB in 25s (100.00 MiB/s)',
    ]);
  });

  it('--quiet keeps only errors (with the log tail) and the output paths', async () => {
    const { stdout, stderr } = await play({ quiet: true });
    expect(stderr.lines()).toEqual([
      `[43.4s] offload: building ${APP} on kana failed: builder failed with exit code 3`,
      'last 1 log lines of app-1.0:',
      '  app.c:3: error: oops',
    ]);
    expect(stdout.lines()).toHaveLength(1);
  });

  it('--log-format json writes pino JSON lines: messages, narrated events with the event, build log lines with their job', async () => {
    const { stderr } = await play({ logFormat: 'json' });
    const entries = stderr.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.every((e) => typeof e.level === 'number' && typeof e.msg === 'string' && typeof e.time === 'number')).toBe(true);
    expect(entries.find((e) => e.kind === 'build-log' && e.host === 'kana')).toMatchObject({ drvName: 'app-1.0', drvPath: APP, msg: 'app.c:3: error: oops', level: 20 });
    expect(entries.find((e) => e.kind === 'event')).toMatchObject({ event: { type: 'jobStarted', jobId: HELLO }, msg: 'ruby: started hello-2.12.1 (est 1m30s)', t: 0.1 });
    expect(entries.find((e) => e.kind === 'failure')).toMatchObject({ level: 50, host: 'kana', logTail: ['app.c:3: error: oops'] });
    expect(entries.filter((e) => e.level === 40).map((e) => e.msg)).toEqual(['ruby is down (connection lost); its jobs go to other machines; retrying it in 30 s']);
    // The executor's own failure lines never leak through as messages.
    expect(entries.some((e) => String(e.msg).startsWith('last 1 log lines'))).toBe(false);
  });

  it('--log-file gets every entry as JSON even with --quiet', async () => {
    const file = join(dir, 'run.log');
    const { stderr } = await play({ quiet: true, logFile: file });
    const entries = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(entries.filter((e) => e.kind === 'build-log')).toHaveLength(2);
    expect(entries.filter((e) => e.kind === 'event')).toHaveLength(5);
    expect(entries.at(-1)).toMatchObject({ msg: '1 built, 1 failed in 43.4 s' });
    expect(stderr.lines()).toHaveLength(3);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('--log-file refuses a symlink instead of appending to whatever it points at', () => {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'untouched\n');
    const link = join(dir, 'planted.log');
    symlinkSync(victim, link);
    expect(() => new BuildObservers({ color: false, logFile: link }, { stdout: capture(), stderr: capture() })).toThrow(
      `the log file ${link} is a symbolic link (to ${victim}); offload does not follow links for files it writes, so name the file itself`,
    );
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
  });
});

describe('BuildObservers event streams', () => {
  it('--json-events: one NDJSON object per event on stdout, then the result line', async () => {
    const { stdout } = await play({ jsonEvents: true, quiet: true });
    const lines = stdout.lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    const events = script.flatMap((s) => (s.event ? [s.event] : []));
    expect(lines.slice(0, -1)).toEqual(events);
    expect(lines.at(-1)).toMatchObject({ type: 'result', makespan: 43.4, interrupted: false, outputs: { [HELLO]: { out: expect.any(String) } } });
    expect((lines.at(-1)!.jobs as unknown[]).length).toBe(2);
  });

  it('--log-format internal-json: every stderr line is `@nix {json}`: a build activity per job, log lines, the failure as error', async () => {
    const { stderr } = await play({ logFormat: 'internal-json' });
    const lines = stderr.lines();
    expect(lines.every((l) => l.startsWith('@nix '))).toBe(true);
    const msgs = lines.map((l) => JSON.parse(l.slice(5)) as Record<string, unknown>);
    const starts = msgs.filter((m) => m.action === 'start');
    expect(starts.map((m) => (m.fields as unknown[]).slice(0, 2))).toEqual([
      [HELLO, 'ssh://ruby'],
      [APP, 'ssh://kana'],
    ]);
    expect(msgs.filter((m) => m.action === 'result' && m.type === 101).map((m) => m.fields)).toEqual([['compiling hello.c'], ['app.c:3: error: oops']]);
    const error = msgs.find((m) => m.action === 'msg' && m.level === 0)!;
    expect(error.msg).toMatch(new RegExp(`^error: builder for '${APP.replace(/\./g, '\\.')}' failed on kana: builder failed with exit code 3;\n.*last 1 log lines:\n.*> app\\.c:3: error: oops$`));
    expect(msgs.filter((m) => m.action === 'stop').map((m) => m.id)).toEqual(starts.map((m) => m.id));
    expect(msgs.find((m) => m.action === 'msg' && m.level === 3 && String(m.msg).startsWith('ruby is down'))).toBeDefined();
  });

  it('internal-json stops builds still open when the run is interrupted', async () => {
    const stderr = capture();
    const observers = new BuildObservers({ color: false, logFormat: 'internal-json' }, { stdout: capture(), stderr });
    const onEvent = observers.begin({ jobs, hosts, now: () => 1 });
    onEvent(script[0]!.event!);
    await observers.finish({ ...result, records: [], interrupted: true });
    const msgs = stderr.lines().map((l) => JSON.parse(l.slice(5)) as Record<string, unknown>);
    const start = msgs.find((m) => m.action === 'start')!;
    expect(msgs.filter((m) => m.action === 'stop')).toEqual([{ action: 'stop', id: start.id }]);
  });
});

describe('BuildObservers on a terminal', () => {
  it('draws the live view; build logs only with -v, failures with their tail always', async () => {
    const quiet = (await play({}, true)).stderr.text();
    expect(quiet).toContain('\x1b[?25l');
    expect(quiet).toMatch(/offload {2}1 done · 0 running · 0 queued · 1 failed/);
    expect(quiet).toMatch(/ ruby 0\/2 down: connection lost/);
    expect(quiet).not.toContain('compiling hello.c');
    expect(quiet).toContain(`offload: building ${APP} on kana failed`);
    expect(quiet).toContain('  app.c:3: error: oops');
    expect(quiet).not.toContain('ruby: started hello-2.12.1');
    expect(quiet.endsWith('\x1b[?25h')).toBe(false);
    expect(quiet).toContain('\x1b[?25h');
    const verbose = (await play({ verbose: true }, true)).stderr.text();
    expect(verbose).toContain('[ruby] hello-2.12.1> compiling hello.c');
  });

  it('-L prints every build log line above the live view, as nix build -L does, even with --quiet', async () => {
    const logs = (await play({ printBuildLogs: true }, true)).stderr.text();
    expect(logs).toContain('[ruby] hello-2.12.1> compiling hello.c');
    expect(logs).toContain('\x1b[?25l');
    const quietLogs = (await play({ printBuildLogs: true, quiet: true }, false)).stderr.text();
    expect(quietLogs).toContain('[ruby] hello-2.12.1> compiling hello.c');
    expect(quietLogs).not.toContain('started hello-2.12.1');
  });
});

describe('BuildObservers history', () => {
  it('records every finished build with its host and speedFactor; the next estimate comes from it', async () => {
    const file = join(dir, 'history.sqlite');
    await play({ quiet: true }, false, file);
    const db = new Database(file, { readonly: true });
    const rows = db.prepare('SELECT name, system, host, speed_factor AS speed, seconds, status, drv_path AS drv FROM builds ORDER BY id').all();
    db.close();
    expect(rows).toEqual([
      { name: 'hello-2.12.1', system: 'x86_64-linux', host: 'ruby', speed: 1, seconds: 42.2, status: 'built', drv: HELLO },
      { name: 'app-1.0', system: 'x86_64-linux', host: 'kana', speed: 2, seconds: 1, status: 'failed', drv: APP },
    ]);
    const history = new SqliteBuildHistory(file);
    const found = await history.estimateMany([
      { name: 'hello-2.12.1', system: 'x86_64-linux' },
      { name: 'app-1.0', system: 'x86_64-linux' },
    ]);
    expect(found.get('x86_64-linux\u0000hello-2.12.1')).toMatchObject({ seconds: 42.2, samples: 1 });
    expect(found.get('x86_64-linux\u0000app-1.0')).toBeUndefined();
    await history.close();
  });

  it('--no-history opens nothing and records nothing', async () => {
    const file = join(dir, 'never.sqlite');
    const observers = new BuildObservers({ color: false, quiet: true }, { stdout: capture(), stderr: capture() });
    expect(await observers.openHistory({ kind: 'local' }, { historyFile: file, history: false }, [])).toBeUndefined();
    await observers.close();
    expect(() => readFileSync(file)).toThrow();
  });
});

describe('BuildObservers colours', () => {
  afterEach(() => vi.unstubAllEnvs());

  async function warnedOnTerminal(color: boolean): Promise<string> {
    const stderr = capture(true);
    const observers = new BuildObservers({ color }, { stdout: capture(), stderr });
    observers.warn('ruby is down (connection lost)');
    await observers.finish({ ...result, records: [] });
    return stderr.text();
  }

  it('colour messages by level on a terminal', async () => {
    vi.stubEnv('NO_COLOR', '');
    // The bytes pino-pretty printed for it: level colour inside a reset.
    expect(await warnedOnTerminal(true)).toContain('\x1b[0m\x1b[33moffload: ruby is down (connection lost)\x1b[39m\x1b[0m\n');
  });

  it('never with --no-color or NO_COLOR, nor when stderr is not a terminal', async () => {
    vi.stubEnv('NO_COLOR', '');
    expect(await warnedOnTerminal(false)).not.toMatch(/\x1b\[3\d?m/);
    vi.stubEnv('NO_COLOR', '1');
    expect(await warnedOnTerminal(true)).not.toMatch(/\x1b\[3\d?m/);
    const stderr = capture(false);
    const observers = new BuildObservers({ color: true }, { stdout: capture(), stderr });
    observers.warn('plain');
    expect(stderr.text()).toBe('offload: plain\n');
  });
});

describe('BuildObservers and a builder\'s colours', () => {
  afterEach(() => vi.unstubAllEnvs());
  const RED = '\x1b[31mred\x1b[0m text';

  /** One coloured log line of a job that then fails, as ServerLog hands it on (colours kept, all else filtered). */
  async function colouredRun(opts: Partial<BuildOutputOptions>, tty: boolean) {
    vi.stubEnv('NO_COLOR', '');
    const stdout = capture();
    const stderr = capture(tty);
    const observers = new BuildObservers({ color: tty, ...opts }, { stdout, stderr });
    const onEvent = observers.begin({ jobs, hosts, now: () => 1 });
    onEvent(script[0]!.event!);
    onEvent({ type: 'buildLog', time: 1, jobId: HELLO, host: 'ruby', line: `${RED}\x1b[1m` });
    onEvent({ type: 'jobFinished', time: 2, jobId: HELLO, name: 'hello-2.12.1', host: 'ruby', status: 'failed', seconds: 1, error: 'failed' });
    await observers.finish({ ...result, records: [] });
    return { stdout: stdout.text(), stderr: stderr.text() };
  }

  it('shows them on a colour terminal, reset at the end of the line so they never bleed', async () => {
    const { stderr } = await colouredRun({ verbose: true }, true);
    expect(stderr).toContain(`[ruby] hello-2.12.1> ${RED}\x1b[1m\x1b[0m`);
    expect(stderr).toContain(`  ${RED}\x1b[1m\x1b[0m`);
  });

  it('drops them everywhere else: plain stderr, JSON stderr, --log-file, --json-events, internal-json', async () => {
    const file = join(dir, 'colours.log');
    const plain = await colouredRun({ logFile: file, jsonEvents: true }, false);
    expect(plain.stderr).toContain('[ruby] hello-2.12.1> red text\n');
    expect(plain.stdout).toContain('"line":"red text"');
    const fileText = readFileSync(file, 'utf8');
    expect(fileText).toContain('"msg":"red text"');
    expect(fileText).toContain('"logTail":["red text"]');
    for (const text of [plain.stderr, plain.stdout, fileText]) expect(text).not.toMatch(/\x1b|\\u001b/);
    const json = await colouredRun({ logFormat: 'json' }, false);
    expect(json.stderr).toContain('"msg":"red text"');
    expect(json.stderr).not.toMatch(/\x1b|\\u001b/);
    const nom = await colouredRun({ logFormat: 'internal-json' }, false);
    expect(nom.stderr).toContain('"fields":["red text"]');
    expect(nom.stderr).not.toMatch(/\x1b|\\u001b/);
  });
});
