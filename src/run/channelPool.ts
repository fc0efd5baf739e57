import { ExitCode, OffloadError } from '../errors/offloadError.js';
import type { ChannelSource, StoreChannel } from './storeChannel.js';

/** The pool is closed only when the run ends or is interrupted: a job asking after that is stopped, not broken. */
export class ChannelPoolClosedError extends OffloadError {
  constructor(host: string) {
    super(`no new channel to ${host}: the run is ending (interrupted)`, ExitCode.interrupted);
  }
}

export type ChannelOpener = (host: string) => Promise<StoreChannel>;

/**
 * Serve channels per host: a job takes an idle one when there is one, so a
 * new `nix-store --serve` is started only when every open channel is busy.
 * A few idle channels per host are kept; more are closed.
 */
export class ChannelPool implements ChannelSource {
  private readonly idle = new Map<string, StoreChannel[]>();
  private readonly open = new Set<StoreChannel>();
  /** Channels opened ahead of need (warm), not yet taken: the next acquire waits for one rather than opening another. */
  private readonly warming = new Map<string, Promise<StoreChannel>[]>();
  private closed = false;

  constructor(
    private readonly opener: ChannelOpener,
    private readonly maxIdlePerHost = 2,
  ) {}

  async acquire(host: string, opts: { substitute?: boolean } = {}): Promise<StoreChannel> {
    if (this.closed) throw new ChannelPoolClosedError(host);
    const idle = this.idle.get(host) ?? [];
    for (let i = idle.length - 1; i >= 0; i--) {
      const reused = idle[i]!;
      if (reused.usable === false) {
        idle.splice(i, 1);
        this.discard(host, reused);
        continue;
      }
      if (opts.substitute && reused.substitutes === false) continue;
      idle.splice(i, 1);
      return reused;
    }
    const opening = this.warming.get(host)?.shift();
    if (opening) {
      // A failure to open it ahead is this acquire's, as if it had opened the channel itself.
      const warm = await opening;
      if (this.closed) throw new ChannelPoolClosedError(host);
      if (warm.usable !== false && !(opts.substitute && warm.substitutes === false)) return warm;
      this.release(host, warm);
    }
    return this.opened(host);
  }

  /**
   * Starts opening a channel to `host` before any job needs it: it goes to
   * the next acquire (which waits for it rather than opening another), or
   * idle into the pool once open. A failure waits for the next acquire,
   * which meets it as if it had opened the channel itself.
   */
  warm(host: string): void {
    if (this.closed) return;
    const opening = this.opened(host);
    const list = this.warming.get(host) ?? [];
    list.push(opening);
    this.warming.set(host, list);
    opening.then(
      (channel) => {
        const index = list.indexOf(opening);
        if (index < 0) return;
        void list.splice(index, 1);
        this.release(host, channel);
      },
      () => undefined,
    );
  }

  /**
   * The next acquire of `host` gets a channel ready for work: an idle one
   * that is ready already goes last in line (acquire takes the last), else
   * the last usable idle one is readied, else the next one being opened
   * ahead. None is opened for it: with every channel busy, the next acquire
   * may well find one free.
   */
  prepare(host: string): void {
    if (this.closed) return;
    const idle = this.idle.get(host) ?? [];
    const usable = idle.filter((c) => c.usable !== false);
    const ready = usable.filter((c) => c.ready !== false).at(-1);
    if (ready) {
      idle.splice(idle.indexOf(ready), 1);
      idle.push(ready);
      return;
    }
    const next = usable.at(-1);
    if (next) {
      next.prepare?.();
      return;
    }
    void this.warming.get(host)?.[0]?.then(
      (channel) => channel.prepare?.(),
      () => undefined,
    );
  }

  /** A channel opened elsewhere (a local store's first `nix-store --serve`) joins the pool, idle. */
  adopt(host: string, channel: StoreChannel): void {
    if (this.closed) {
      closeQuietly(channel);
      return;
    }
    this.open.add(channel);
    this.release(host, channel);
  }

  private async opened(host: string): Promise<StoreChannel> {
    const channel = await this.opener(host);
    if (this.closed) {
      closeQuietly(channel);
      throw new ChannelPoolClosedError(host);
    }
    this.open.add(channel);
    return channel;
  }

  release(host: string, channel: StoreChannel): void {
    const idle = this.idle.get(host) ?? [];
    if (this.closed || idle.length >= this.maxIdlePerHost) {
      this.discard(host, channel);
      return;
    }
    idle.push(channel);
    this.idle.set(host, idle);
  }

  discard(_host: string, channel: StoreChannel): void {
    this.open.delete(channel);
    closeQuietly(channel);
  }

  /** Idle channels of a host whose connection failed are dead; busy ones fail on their own. */
  dropHost(host: string): void {
    for (const channel of this.idle.get(host) ?? []) this.discard(host, channel);
    this.idle.delete(host);
  }

  /** Closes every channel, busy ones too: running commands fail with a lost connection. */
  closeAll(): void {
    this.closed = true;
    for (const channel of this.open) closeQuietly(channel);
    this.open.clear();
    this.idle.clear();
    this.warming.clear();
  }

  openCount(): number {
    return this.open.size;
  }
}

/** Closes a channel whose transport may be gone already: that is no error worth reporting. */
export function closeQuietly(channel: StoreChannel): void {
  try {
    const done = channel.close();
    if (done instanceof Promise) done.catch(() => undefined);
  } catch {
    // Closing a channel whose transport already died is not an error worth reporting.
  }
}
