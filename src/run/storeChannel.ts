import type { Readable } from 'node:stream';
import type { Derivation } from '../drv/derivation.js';
import type { BuildResult } from '../remote/buildResult.js';

/**
 * What the executor needs from one serve channel (a running
 * `nix-store --serve --write` on a builder or locally). ServeClient provides
 * it; naming the subset here keeps run/ independent of the wire protocol.
 */
export interface StoreChannel {
  queryValidPaths(paths: string[], opts?: { lock?: boolean; substitute?: boolean }): Promise<Iterable<string>>;
  queryClosure(paths: string[], includeOutputs: boolean): Promise<Iterable<string>>;
  /** The export stream; it ends exactly where the export ends. */
  exportPaths(paths: string[]): Readable | Promise<Readable>;
  importPaths(stream: Readable): Promise<unknown>;
  buildDerivation(drvPath: string, drv: Derivation, opts: BuildRequestOptions): Promise<BuildResult>;
  close(): void | Promise<void>;
}

export interface BuildRequestOptions {
  /** Receives the build log as it arrives. */
  onLog?: (chunk: string | Buffer) => void;
}

/** Opens channels to each host, keeping a few idle ones for reuse. */
export interface ChannelSource {
  acquire(host: string): Promise<StoreChannel>;
  /** Back to the idle pool (the channel is known to be in a clean state). */
  release(host: string, channel: StoreChannel): void;
  /** Closes a channel that may be broken. */
  discard(host: string, channel: StoreChannel): void;
}
