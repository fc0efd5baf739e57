import type { Readable } from 'node:stream';
import type { Derivation } from '../drv/derivation.js';
import type { BuildResult } from '../remote/buildResult.js';

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
  /** NAR sizes of the valid ones among `paths` (serve protocol's path infos). */
  queryPathInfos?(paths: string[]): Promise<Iterable<{ path: string; narSize: number }>>;
  /** The export stream; it ends exactly where the export ends. */
  exportPaths(paths: string[]): Readable | Promise<Readable>;
  importPaths(stream: AsyncIterable<Buffer | Uint8Array | string>): Promise<unknown>;
  buildDerivation(drvPath: string, drv: Derivation, opts: BuildRequestOptions): Promise<BuildResult>;
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
}
