import { Readable } from 'node:stream';
import type { Derivation } from '../../src/drv/derivation.js';
import { BuildStatus, buildStatusName, type BuildResult } from '../../src/remote/buildResult.js';
import { ServeConnectionLostError } from '../../src/remote/serveClient.js';
import { HostUnreachableError } from '../../src/remote/sshErrors.js';
import type { LiveScheduler } from '../../src/run/executor.js';
import type { BuildRequestOptions, ChannelSource, StoreChannel } from '../../src/run/storeChannel.js';
import type { NarStream, PathInfo } from '../../src/remote/serveClient.js';
import { testDerivation } from './drvFixtures.js';

/**
 * Fakes for the executor's two collaborators, so its decisions are tested
 * without SSH, Nix or a clock: FakeScheduler hands out jobs in order to the
 * first host with a free slot; FakeHosts keeps a set of store paths per host
 * and runs each build as the test scripts it.
 */

export const drvPath = (name: string) => `/nix/store/${name.padEnd(32, 'd').slice(0, 32).replace(/[^a-z0-9]/g, 'd')}-${name}.drv`;
export const outPath = (name: string) => `/nix/store/${name.padEnd(32, 'o').slice(0, 32).replace(/[^a-z0-9]/g, 'o')}-${name}`;

/** Derivations named by id; `deps` lists each one's input derivations by id. */
export function fakeDrvs(deps: Record<string, string[]>): Map<string, Derivation> {
  return new Map(
    Object.entries(deps).map(([name, inputs]) => [
      drvPath(name),
      testDerivation({
        drvPath: drvPath(name),
        name,
        outputs: { out: { path: outPath(name), hashAlgo: '', hash: '' } },
        inputDrvs: Object.fromEntries(inputs.map((input) => [drvPath(input), ['out']])),
      }),
    ]),
  );
}

type JobState = 'blocked' | 'ready' | 'running' | 'done' | 'failed';

export class FakeScheduler implements LiveScheduler {
  readonly state = new Map<string, JobState>();
  readonly hostOf = new Map<string, string>();
  readonly available = new Map<string, boolean>();
  /** Every setHostAvailable call, in order: `ruby:false`. */
  readonly availability: string[] = [];
  readonly requeued: string[] = [];
  private readonly running = new Map<string, number>();

  /** `deps`: job id → ids it needs; `slots`: host → maxJobs, in the order hosts are tried; `pins`: job id → the hosts it may use. */
  constructor(
    private readonly deps: Map<string, string[]>,
    private readonly slots: Map<string, number>,
    private readonly pins = new Map<string, string[]>(),
  ) {
    for (const id of deps.keys()) this.state.set(id, 'blocked');
    for (const host of slots.keys()) this.available.set(host, true);
    this.unblock();
  }

  next(): Array<{ jobId: string; host: string }> {
    const out: Array<{ jobId: string; host: string }> = [];
    const free = new Map([...this.slots].map(([host, n]) => [host, n - (this.running.get(host) ?? 0)]));
    for (const [jobId, state] of this.state) {
      if (state !== 'ready') continue;
      const allowed = this.pins.get(jobId);
      const host = [...free].find(([h, n]) => n > 0 && this.available.get(h) && (!allowed || allowed.includes(h)))?.[0];
      if (host === undefined) continue;
      free.set(host, free.get(host)! - 1);
      out.push({ jobId, host });
    }
    return out;
  }

  started(jobId: string, host: string): void {
    this.state.set(jobId, 'running');
    this.hostOf.set(jobId, host);
    this.running.set(host, (this.running.get(host) ?? 0) + 1);
  }

  finished(jobId: string): void {
    this.leave(jobId);
    this.state.set(jobId, 'done');
    this.unblock();
  }

  failed(jobId: string): string[] {
    this.leave(jobId);
    this.state.set(jobId, 'failed');
    const skipped: string[] = [];
    for (let grew = true; grew; ) {
      grew = false;
      for (const [id, needs] of this.deps) {
        if (skipped.includes(id) || this.state.get(id) === 'done') continue;
        if (needs.some((d) => d === jobId || skipped.includes(d))) {
          skipped.push(id);
          this.state.set(id, 'failed');
          grew = true;
        }
      }
    }
    return skipped;
  }

  requeue(jobId: string): void {
    this.requeued.push(jobId);
    this.leave(jobId);
    this.state.set(jobId, 'blocked');
    this.unblock();
  }

  unfinish(jobId: string): void {
    this.state.set(jobId, 'blocked');
    for (const [id, needs] of this.deps) if (needs.includes(jobId) && this.state.get(id) === 'ready') this.state.set(id, 'blocked');
    this.unblock();
  }

  setHostAvailable(host: string, available: boolean): void {
    this.available.set(host, available);
    this.availability.push(`${host}:${available}`);
  }

  /** Jobs that still wait on this one, counted along the longest chain: a critical path in job counts. */
  rankOf(jobId: string): number {
    let longest = 0;
    for (const [id, needs] of this.deps) if (needs.includes(jobId)) longest = Math.max(longest, this.rankOf(id));
    return 1 + longest;
  }

  bestReadyRank(host: string): number | undefined {
    const ranks = [...this.state]
      .filter(([id, state]) => state === 'ready' && (this.pins.get(id)?.includes(host) ?? true))
      .map(([id]) => this.rankOf(id));
    return ranks.length > 0 ? Math.max(...ranks) : undefined;
  }

  private leave(jobId: string): void {
    if (this.state.get(jobId) !== 'running') return;
    const host = this.hostOf.get(jobId)!;
    this.running.set(host, this.running.get(host)! - 1);
  }

  private unblock(): void {
    for (const [id, needs] of this.deps) {
      if (this.state.get(id) === 'blocked' && needs.every((d) => this.state.get(d) === 'done')) this.state.set(id, 'ready');
    }
  }
}

/** What a scripted build does: finish with a status, lose the connection, or wait for the test. */
export type BuildScript = BuildStatus | 'lose-connection' | Promise<BuildStatus | 'lose-connection'>;

export function buildResult(status: BuildStatus): BuildResult {
  return {
    status,
    statusName: buildStatusName(status),
    errorMsg: status === BuildStatus.Built ? '' : 'scripted',
    timesBuilt: 1,
    isNonDeterministic: false,
    startTime: 0,
    stopTime: 0,
    builtOutputs: new Map(),
  };
}

/** A promise the test settles when it wants: for a build or transfer caught midway. */
export function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

/** Builders as sets of store paths, reached through channels that record what they were asked. */
export class FakeHosts implements ChannelSource {
  readonly stores = new Map<string, Set<string>>();
  readonly unreachable = new Set<string>();
  /** `host drvName` per build started, in order. */
  readonly builds: string[] = [];
  /** `source→target path` per path streamed. */
  readonly streamed: string[] = [];
  readonly dropped: string[] = [];
  readonly acquired: string[] = [];
  /** Open channels per host; a released one counts as open until discarded. */
  readonly openChannels = new Map<string, number>();
  /** Scripted builds by derivation name; each script is used once, then builds succeed. */
  readonly scripts = new Map<string, BuildScript[]>();
  /** Holds exports from a host until the test opens the gate. */
  readonly exportGates = new Map<string, Promise<void>>();
  /** Paths a host's substituters can fetch (for builders-use-substitutes). */
  readonly substitutable = new Map<string, Set<string>>();
  /** Called when an export from `host` starts, before any byte is sent. */
  onExport: (host: string) => void = () => undefined;
  private readonly channelsOf = new Map<string, Set<FakeChannel>>();

  /** The local store (`local`) is always there. */
  constructor(hosts: string[]) {
    for (const host of ['local', ...hosts]) this.stores.set(host, new Set());
  }

  script(name: string, ...steps: BuildScript[]): void {
    this.scripts.set(name, steps);
  }

  acquire(host: string): Promise<StoreChannel> {
    this.acquired.push(host);
    if (this.unreachable.has(host)) return Promise.reject(new HostUnreachableError(host, '127.0.0.1', 22, 'connection refused'));
    const channel = new FakeChannel(this, host);
    this.channelsOf.set(host, (this.channelsOf.get(host) ?? new Set()).add(channel));
    this.openChannels.set(host, (this.openChannels.get(host) ?? 0) + 1);
    return Promise.resolve(channel);
  }

  release(): void {}

  discard(host: string, channel: StoreChannel): void {
    void channel.close();
    this.forget(host, channel as FakeChannel);
  }

  dropHost(host: string): void {
    this.dropped.push(host);
  }

  /** The builder dies: its store is gone and every open channel fails from now on. */
  kill(host: string): void {
    this.stores.set(host, new Set());
    this.unreachable.add(host);
    for (const channel of this.channelsOf.get(host) ?? []) channel.broken = true;
  }

  forget(host: string, channel: FakeChannel): void {
    if (this.channelsOf.get(host)?.delete(channel)) this.openChannels.set(host, this.openChannels.get(host)! - 1);
  }

  nextScript(name: string): BuildScript {
    return this.scripts.get(name)?.shift() ?? BuildStatus.Built;
  }
}

class FakeChannel implements StoreChannel {
  broken = false;

  constructor(
    private readonly hosts: FakeHosts,
    private readonly host: string,
  ) {}

  get usable(): boolean {
    return !this.broken;
  }

  private store(): Set<string> {
    if (this.broken) throw new ServeConnectionLostError(`Lost the connection to ${this.host}.`, this.host);
    return this.hosts.stores.get(this.host)!;
  }

  queryValidPaths(paths: string[], opts: { substitute?: boolean } = {}): Promise<string[]> {
    return Promise.resolve().then(() => {
      const store = this.store();
      if (opts.substitute) for (const p of paths) if (this.hosts.substitutable.get(this.host)?.has(p)) store.add(p);
      return paths.filter((p) => store.has(p));
    });
  }

  /** Paths have no references here: a closure is the paths themselves. */
  queryClosure(paths: string[]): Promise<string[]> {
    return Promise.resolve().then(() => {
      this.store();
      return paths;
    });
  }

  /** Paths have no references here; the NAR of a path is a little JSON naming it and the host it came from. */
  queryPathInfos(paths: string[]): Promise<PathInfo[]> {
    return Promise.resolve().then(() => {
      const store = this.store();
      return paths.filter((p) => store.has(p)).map((path) => ({ path, references: [], downloadSize: narOf(this.host, path).length, narSize: narOf(this.host, path).length, sigs: [] }));
    });
  }

  async *dumpNars(infos: readonly PathInfo[]): AsyncGenerator<NarStream> {
    this.store();
    this.hosts.onExport(this.host);
    await this.hosts.exportGates.get(this.host);
    for (const info of infos) {
      if (!this.store().has(info.path)) throw new ServeConnectionLostError(`${this.host} lost a path midway.`, this.host);
      yield { info, chunks: Readable.from([[narOf(this.host, info.path)]], { objectMode: true }) };
    }
  }

  async addNars(nars: AsyncIterable<NarStream>, opts: { onBytes?: (bytes: number) => void } = {}): Promise<void> {
    for await (const nar of nars) {
      const parts: Buffer[] = [];
      for await (const batch of nar.chunks) {
        parts.push(...batch);
        opts.onBytes?.(batch.reduce((sum, chunk) => sum + chunk.length, 0));
      }
      const { from, path } = JSON.parse(Buffer.concat(parts).toString()) as { from: string; path: string };
      this.store().add(path);
      this.hosts.streamed.push(`${from}→${this.host} ${path.slice(44)}`);
    }
  }

  async buildDerivation(_drvPath: string, drv: Derivation, opts: BuildRequestOptions): Promise<BuildResult> {
    this.store();
    this.hosts.builds.push(`${this.host} ${drv.name}`);
    opts.onLog?.(`building ${drv.name}`);
    const outcome = await this.hosts.nextScript(drv.name);
    if (outcome === 'lose-connection' || this.broken) throw new ServeConnectionLostError(`Lost the connection to ${this.host} while building.`, this.host);
    if (outcome === BuildStatus.Built) for (const output of Object.values(drv.outputs)) this.store().add(output.path);
    return buildResult(outcome);
  }

  close(): void {
    this.broken = true;
    this.hosts.forget(this.host, this);
  }
}

/** The fake NAR of `path` as `host` sends it. */
export function narOf(host: string, path: string): Buffer {
  return Buffer.from(JSON.stringify({ from: host, path }));
}
