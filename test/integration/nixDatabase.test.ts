import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OffloadError } from '../../src/errors/offloadError.js';
import { ServeClient } from '../../src/remote/serveClient.js';
import { queryValidLocalPaths, queryValidLocalPathsKeepingServe } from '../../src/store/localStore.js';
import { LocalStoreChannel } from '../../src/store/localStoreChannel.js';
import { NixDatabase } from '../../src/store/nixDatabase.js';
import { spawnServe } from '../../src/store/spawnServe.js';
import { startPrivateStore, type PrivateStore } from '../support/privateStore.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate } from '../support/nixFixtures.js';
import { NIX_ENV, offload } from './buildSupport.js';

const INVALID = '/nix/store/00000000000000000000000000000000-not-there';

/**
 * Nix's database read in this process (store/nixDatabase.ts) against
 * `nix-store --serve` on the same store: a private store of the test's own
 * (its /nix in a mount namespace), filled by real Nix with built paths
 * (references, a deriver, a self-reference), signed ones, content-addressed
 * ones (`nix-store --add`, `--add-fixed`, `.drv` files).
 */
describe.runIf(integrationPrereqs())("Nix's database, read in-process", () => {
  let store: PrivateStore;
  let work: string;
  let dbDir: string;
  let serve: ServeClient;
  const p = { dep: '', top: '', self: '', topDrv: '', added: '', addedFlat: '' };

  const inStore = async (command: string[]) => {
    const r = await store.run(command, { env: NIX_ENV });
    expect(r.code, `${command.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout.trim();
  };
  /** nix-store as this test's store has it, started inside its namespace. */
  const enterStore = ['-t', '', '-m', '--', 'nix-store'];
  const openServe = async () => ServeClient.open(await spawnServe({ nixStoreBin: 'nsenter', args: enterStore, env: NIX_ENV }));

  beforeAll(async () => {
    store = await startPrivateStore('nixdb');
    enterStore[1] = String(store.holderPid);
    work = mkdtempSync(join(tmpdir(), 'offload-nixdb-'));
    dbDir = join(store.nixDir, 'var', 'nix', 'db');
    const nonce = randomBytes(6).toString('hex');
    const file = join(work, 'paths.nix');
    writeFileSync(
      file,
      `let
        sys = builtins.currentSystem;
        dep = derivation { name = "db-dep"; system = sys; builder = "/bin/sh"; nonce = "${nonce}"; args = [ "-c" "echo dep > $out" ]; };
      in {
        top = derivation { name = "db-top"; system = sys; builder = "/bin/sh"; nonce = "${nonce}"; args = [ "-c" "echo \${dep} > $out" ]; };
        self = derivation { name = "db-self"; system = sys; builder = "/bin/sh"; nonce = "${nonce}"; args = [ "-c" "echo $out > $out" ]; };
      }`,
    );
    [p.top, p.self] = (await inStore(['nix-build', '--no-out-link', file, '-A', 'top', '-A', 'self'])).split('\n') as [string, string];
    p.dep = (await inStore(['nix-store', '--query', '--references', p.top])).split('\n').find((r) => r.endsWith('-db-dep'))!;
    p.topDrv = await inStore(['nix-store', '--query', '--deriver', p.top]);
    writeFileSync(join(work, `added-${nonce}`), `recursive ${nonce}\n`);
    writeFileSync(join(work, `flat-${nonce}`), `flat ${nonce}\n`);
    p.added = await inStore(['nix-store', '--add', join(work, `added-${nonce}`)]);
    p.addedFlat = await inStore(['nix-store', '--add-fixed', 'sha256', join(work, `flat-${nonce}`)]);
    // Two keys on one path: Nix keeps the signatures as a sorted set.
    for (const name of ['zeta-1', 'alpha-1']) {
      await inStore(['nix-store', '--generate-binary-cache-key', name, join(work, `${name}.sec`), join(work, `${name}.pub`)]);
      await inStore(['nix', '--extra-experimental-features', 'nix-command', 'store', 'sign', '--key-file', join(work, `${name}.sec`), p.dep]);
    }
    serve = await openServe();
  }, 120_000);

  afterAll(async () => {
    serve?.close();
    await store?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const every = () => [p.dep, p.top, p.self, p.topDrv, p.added, p.addedFlat, INVALID];

  it('answers validity and path infos exactly as nix-store --serve does', async () => {
    const db = NixDatabase.open(dbDir)!;
    expect(db).toBeDefined();
    // Asked out of order and with a repeat: Nix answers each valid path once, sorted.
    const asked = [...every().reverse(), p.top];
    expect(db.validPaths(asked)).toEqual(await serve.queryValidPaths(asked));
    const infos = db.pathInfos(asked)!;
    expect(infos).toEqual(await serve.queryPathInfos(asked));
    // Not vacuous: the store holds each kind of row.
    const info = new Map(infos.map((i) => [i.path, i]));
    expect(info.get(p.top)).toMatchObject({ deriver: p.topDrv, references: [p.dep] });
    expect(info.get(p.self)!.references).toEqual([p.self]);
    expect(info.get(p.dep)!.sigs).toEqual([expect.stringMatching(/^alpha-1:/), expect.stringMatching(/^zeta-1:/)]);
    expect(info.get(p.added)!.ca).toMatch(/^fixed:r:sha256:[0-9a-z]{52}$/);
    expect(info.get(p.addedFlat)!.ca).toMatch(/^fixed:sha256:[0-9a-z]{52}$/);
    expect(info.get(p.topDrv)!.ca).toMatch(/^text:sha256:[0-9a-z]{52}$/);
    expect(info.get(p.added)).not.toHaveProperty('deriver');
    expect(info.has(INVALID)).toBe(false);
    db.close();
  });

  it('answers closures as nix-store --serve does, and leaves a closure of an invalid path to it', async () => {
    const db = NixDatabase.open(dbDir)!;
    for (const roots of [[p.top], [p.self, p.added], [p.topDrv], [p.top, p.dep, p.top]]) {
      expect(db.closure(roots), roots.join(' ')).toEqual(await serve.queryClosure(roots));
    }
    expect(db.closure([p.topDrv])!.length).toBeGreaterThan(1);
    expect(db.closure([p.top, INVALID])).toBeUndefined();
    db.close();
  });

  it('starts nix-store only for a question the database cannot answer, or one that locks', async () => {
    const db = NixDatabase.open(dbDir)!;
    const { channel, started } = countingChannel(db);
    try {
      expect(await channel.queryValidPaths(every())).toEqual(await serve.queryValidPaths(every()));
      expect(await channel.queryPathInfos(every())).toEqual(await serve.queryPathInfos(every()));
      expect(await channel.queryClosure([p.top])).toEqual([p.dep, p.top].sort());
      expect(started()).toBe(0);
      // Nix refuses the closure of an invalid path: its error, from its process.
      await expect(channel.queryClosure([INVALID])).rejects.toThrow(/not valid|lost|ended/i);
      expect(started()).toBe(1);
      expect(channel.usable).toBe(false);
    } finally {
      channel.close();
    }
    const { channel: locking, started: lockingStarted } = countingChannel(db);
    try {
      // Temporary GC roots belong to a nix-store process.
      expect(await locking.queryValidPaths([p.dep, INVALID], { lock: true })).toEqual([p.dep]);
      expect(lockingStarted()).toBe(1);
      await expect(locking.queryValidPaths(['/tmp/x'])).rejects.toThrow(/not a valid store path|not inside/);
    } finally {
      locking.close();
    }
    // Readied for work to come (a copy back while the builder builds): its nix-store starts now, and questions still go to the database.
    const { channel: ready, started: readyStarted } = countingChannel(db);
    try {
      ready.prepare();
      expect(readyStarted()).toBe(1);
      expect(ready.ready).toBe(true);
      expect(await ready.queryPathInfos([p.top])).toEqual(await serve.queryPathInfos([p.top]));
      ready.prepare();
      expect(readyStarted()).toBe(1);
    } finally {
      ready.close();
      db.close();
    }
  });

  it('answers queryValidLocalPaths with no nix-store started, and still says when Nix is not installed', async () => {
    const spy = spyNixStore('answers');
    const env = { ...NIX_ENV, NIX_STATE_DIR: join(store.nixDir, 'var', 'nix') };
    expect(await queryValidLocalPaths(every(), { store: 'local', env, nixStoreBin: spy.bin })).toEqual(new Set(every().filter((x) => x !== INVALID)));
    expect(spy.runs()).toBe(0);
    // A daemon store is the daemon's to answer.
    expect(await queryValidLocalPaths([p.dep], { store: 'daemon', env, nixStoreBin: spy.bin })).toEqual(new Set([p.dep]));
    expect(spy.runs()).toBe(1);
    expect(await queryValidLocalPaths(every(), { store: 'local', env, nixStoreBin: join(work, 'nowhere', 'nix-store') })).toBeNull();
    await expect(queryValidLocalPaths(['/etc/passwd'], { store: 'local', env, nixStoreBin: spy.bin })).rejects.toThrow(OffloadError);
  });

  it("for a run, answers from the database only when the roots' outputs are all valid; else the nix-store the run will need answers and stays", async () => {
    const spy = spyNixStore('keeping');
    const env = { ...NIX_ENV, NIX_STATE_DIR: join(store.nixDir, 'var', 'nix') };
    const expected = new Set(every().filter((x) => x !== INVALID));
    const built = await queryValidLocalPathsKeepingServe(every(), { store: 'local', env, nixStoreBin: spy.bin, decisive: [p.top, p.self] });
    expect(built).toEqual({ valid: expected, serve: undefined });
    expect(spy.runs()).toBe(0);
    const toBuild = await queryValidLocalPathsKeepingServe(every(), { store: 'local', env, nixStoreBin: spy.bin, decisive: [p.top, INVALID] });
    try {
      expect(toBuild?.valid).toEqual(expected);
      expect(toBuild?.serve?.usable).toBe(true);
      expect(spy.runs()).toBe(1);
    } finally {
      toBuild?.serve?.close();
    }
  });

  it('falls back to nix-store --serve for a schema it does not know, and for a database it cannot read', async () => {
    const expected = new Set(every().filter((x) => x !== INVALID));
    const cases: Array<[string, (db: string) => void, RegExp]> = [
      ['schema 11', (db) => writeFileSync(join(db, 'schema'), '11'), /schema version is 11, not 10/],
      ['no schema file', (db) => rmSync(join(db, 'schema')), /ENOENT/],
      ['no database file', (db) => rmSync(join(db, 'db.sqlite')), /unable to open|ENOENT|SQLITE_CANTOPEN/i],
      ['a database file that is a folder', (db) => { rmSync(join(db, 'db.sqlite')); mkdirSync(join(db, 'db.sqlite')); }, /SQLITE_IOERR|SQLITE_CANTOPEN/i],
      ['a file that is no database', (db) => writeFileSync(join(db, 'db.sqlite'), 'not SQLite at all, just text that is long enough to be a header'), /not a database|SQLITE_NOTADB/i],
      ['a table without a column', (db) => withWriter(db, (w) => w.exec('alter table ValidPaths drop column ca')), /no column ValidPaths\.ca/],
    ];
    for (const [name, spoil, reason] of cases) {
      const state = copyState(name);
      spoil(join(state, 'db'));
      const spy = spyNixStore(name);
      const debug: string[] = [];
      const env = { ...NIX_ENV, NIX_STATE_DIR: state };
      expect(await queryValidLocalPaths(every(), { store: 'local', env, nixStoreBin: spy.bin, debug: (m) => debug.push(m) }), name).toEqual(expected);
      expect(spy.runs(), name).toBe(1);
      expect(debug.join('\n'), name).toMatch(reason);
    }
  });

  it('falls back to nix-store --serve when a writer holds a database not in WAL mode past the wait', async () => {
    const state = copyState('locked');
    const db = join(state, 'db');
    withWriter(db, (w) => w.pragma('journal_mode = DELETE'));
    const debug: string[] = [];
    const database = NixDatabase.open(db, { debug: (m) => debug.push(m) })!;
    expect(database.validPaths([p.dep])).toEqual([p.dep]);
    const writer = new Database(join(db, 'db.sqlite'));
    writer.exec('begin exclusive');
    const { channel, started } = countingChannel(database);
    try {
      expect(await channel.queryPathInfos(every())).toEqual(await serve.queryPathInfos(every()));
      expect(started()).toBe(1);
      expect(debug.join('\n')).toMatch(/database is locked|SQLITE_BUSY/i);
      writer.exec('rollback');
      // Once failed, it is not asked again: the server answers.
      expect(database.validPaths([p.dep])).toBeUndefined();
      expect(await channel.queryValidPaths(every())).toEqual(await serve.queryValidPaths(every()));
    } finally {
      channel.close();
      database.close();
      writer.close();
    }
  });

  it('lets offload plan and build with nothing to build start no nix-store', async () => {
    const spy = spyNixStore('cli', true);
    const env = { ...NIX_ENV, PATH: `${spy.dir}:${process.env.PATH}` };
    // A derivation built in the machine's store (the CLI runs there, with its own Nix settings).
    const item = await instantiate({ name: 'db-cli', script: 'echo cli > $out' });
    const builder = await ServeClient.open(await spawnServe({ env: NIX_ENV }));
    try {
      expect((await builder.buildDerivation(item.drvPath, item.drv)).statusName).toBe('Built');
    } finally {
      builder.close();
    }
    const plan = await offload(['plan', '--builders', '', item.drvPath], env);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/0 to build, 1 already built/);
    const build = await offload(['build', '--builders', '', '--no-out-link', item.drvPath], env);
    expect(build.code, build.stderr).toBe(0);
    expect(build.stdout.trim()).toBe(item.outPath);
    expect(spy.runs()).toBe(0);
    // The spy does run where nix-store is started: a build's result link goes through Nix.
    const linked = await offload(['build', '--builders', '', '--out-link', join(work, 'cli-result'), item.drvPath], env);
    expect(linked.code, linked.stderr).toBe(0);
    expect(spy.runs()).toBe(1);
  });

  /** A channel on `db` whose nix-store, started in the private store, is counted. */
  function countingChannel(db: NixDatabase): { channel: LocalStoreChannel; started: () => number } {
    let started = 0;
    const channel = new LocalStoreChannel(db, async () => {
      started++;
      return openServe();
    });
    return { channel, started: () => started };
  }

  /** A copy of the private store's state folder (database and schema) to spoil; Nix's own stays as it is. */
  function copyState(name: string): string {
    const state = join(work, `state-${name.replace(/\W+/g, '-')}`);
    mkdirSync(join(state, 'db'), { recursive: true });
    const source = new Database(join(dbDir, 'db.sqlite'), { readonly: true });
    source.exec(`vacuum into '${join(state, 'db', 'db.sqlite')}'`);
    source.close();
    writeFileSync(join(state, 'db', 'schema'), readFileSync(join(dbDir, 'schema')));
    return state;
  }

  /**
   * A `nix-store` that counts its starts, then runs the private store's
   * (`machine`: the machine's own) with the state directory Nix would use
   * there: the answers are real Nix's, whichever database offload tried.
   */
  function spyNixStore(name: string, machine = false): { dir: string; bin: string; runs: () => number } {
    const dir = join(work, `spy-${name.replace(/\W+/g, '-')}`);
    mkdirSync(dir, { recursive: true });
    const bin = join(dir, 'nix-store');
    const count = join(dir, 'runs');
    const real = machine ? `exec '${machineNixStore()}' "$@"` : `exec env -u NIX_STATE_DIR nsenter -t ${store.holderPid} -m -- nix-store "$@"`;
    writeFileSync(bin, `#!/bin/sh\necho run >> '${count}'\n${real}\n`);
    chmodSync(bin, 0o755);
    return { dir, bin, runs: () => (existsSync(count) ? readFileSync(count, 'utf8').split('\n').filter(Boolean).length : 0) };
  }
});

/** The nix-store PATH leads to now, before a spy goes first. */
function machineNixStore(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir !== '' && existsSync(join(dir, 'nix-store'))) return join(dir, 'nix-store');
  throw new Error('nix-store is not on PATH');
}

function withWriter(dbDir: string, body: (db: Database.Database) => void): void {
  const db = new Database(join(dbDir, 'db.sqlite'));
  try {
    body(db);
  } finally {
    db.close();
  }
}
