import type { Derivation } from '../drv/derivation.js';
import type { BuildResult } from '../remote/buildResult.js';
import type { NarHashCheck, NarStream, PathInfo } from '../remote/serveClient.js';

/**
 * What the executor needs from one serve channel (a running
 * `nix-store --serve --write` on a builder or locally). ServeClient provides
 * it; naming the subset here keeps run/ independent of the wire protocol.
 */
export interface StoreChannel {
  /** False once the channel is known to be broken (it then only fails). */
  readonly usable?: boolean;
  /** False once a `substitute` validity query no longer substitutes (the channel built something; see ServeClient). */
  readonly substitutes?: boolean;
  queryValidPaths(paths: string[], opts?: { lock?: boolean; substitute?: boolean }): Promise<Iterable<string>>;
  queryClosure(paths: string[], includeOutputs: boolean): Promise<Iterable<string>>;
  /** Infos of the valid ones among `paths` (NAR hash and size, references); a reply about other paths is refused. */
  queryPathInfos(paths: string[]): Promise<PathInfo[]>;
  /** The NARs of `infos` in order, each checked against its info as it streams (its hash as `hash` says). */
  dumpNars(infos: readonly PathInfo[], opts: { hash: NarHashCheck }): AsyncIterable<NarStream>;
  /**
   * Adds the NARs to this store, streamed; resolves once the store has
   * registered every one (a NAR's `unhashedFrom` host is blamed for a hash it
   * refuses). `onBytes` counts NAR bytes as they are taken from the source.
   */
  addNars(nars: AsyncIterable<NarStream>, opts?: { onBytes?: (bytes: number) => void }): Promise<unknown>;
  buildDerivation(drvPath: string, drv: Derivation, opts: BuildRequestOptions): Promise<BuildResult>;
  /** False while the channel's next NAR or build would first wait for a process to start (see prepare). */
  readonly ready?: boolean;
  /**
   * Starts ahead what the channel's next NAR or build would wait for, where
   * it starts that lazily (the local channel's `nix-store --serve` where
   * Nix's database answers the questions: store/localStoreChannel.ts).
   */
  prepare?(): void;
  close(): void | Promise<void>;
}

export interface BuildRequestOptions {
  /** Receives the build log line by line (without the newline) as it arrives. */
  onLog?: (line: string) => void;
  /** Seconds without log output before the builder's Nix stops the build (TimedOut); 0 = no limit. */
  maxSilentTime?: number;
  /** Seconds the build may run before the builder's Nix stops it (TimedOut); 0 = no limit. */
  buildTimeout?: number;
}

/** Opens channels to each host, keeping a few idle ones for reuse. */
export interface ChannelSource {
  /** With `substitute`, a channel whose validity queries still substitute. */
  acquire(host: string, opts?: { substitute?: boolean }): Promise<StoreChannel>;
  /** Back to the idle pool (the channel is known to be in a clean state). */
  release(host: string, channel: StoreChannel): void;
  /** Closes a channel that may be broken. */
  discard(host: string, channel: StoreChannel): void;
  /** The host's connection failed: its idle channels are dead, the next acquire opens new ones. */
  dropHost?(host: string): void;
  /** The channel the next acquire of `host` gets is made ready for work ahead of it (StoreChannel.prepare). */
  prepare?(host: string): void;
}
