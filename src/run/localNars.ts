import { lstatSync, type Stats } from 'node:fs';
import type { NarStream, PathInfo } from '../remote/serveClient.js';
import { NarBufferPool, narFromFiles } from '../store/narFromFiles.js';
import type { StoreChannel } from './storeChannel.js';

/** Shared by every upload of the process: a buffer written into one channel is read full again for the next. */
const buffers = new NarBufferPool();

/**
 * The NARs of local store paths, in order, for an upload. Where the store's
 * files are readable in this process (`readFiles`, store/storeInProcess.ts
 * storeFilesReadable), each NAR is written from them here
 * (store/narFromFiles.ts), as Nix's build-remote does: the local
 * `nix-store --serve` reading them into a pipe for this process to read and
 * scan again was one more process and copy for every byte. A path whose
 * files are not there is asked of the local channel instead (which fails
 * as it always did for a path that is not valid), and so is every path
 * when the files are not readable.
 *
 * The local store is trusted, so nothing is hashed here; the receiving
 * store checks each NAR's hash against its info before it registers the
 * path, and its refusal of a NAR read from the files is the local store's
 * LocalNarError (`fromLocalFiles`, ServeClient.addNars), not the builder's
 * fault.
 */
export async function* localNars(channel: StoreChannel, infos: readonly PathInfo[], readFiles: boolean): AsyncGenerator<NarStream> {
  if (!readFiles) {
    yield* channel.dumpNars(infos, { hash: 'none' });
    return;
  }
  let fallback: PathInfo[] = [];
  // The NAR being written from files holds its file open across yields: one its consumer left unfinished
  // (moved on, stopped or failed, which returns this generator) is returned here, which closes that file.
  let current: AsyncGenerator<readonly Buffer[]> | undefined;
  try {
    for (const info of infos) {
      const rootStat = lstatOrMissing(info.path);
      if (rootStat === undefined) {
        fallback.push(info);
        continue;
      }
      // Consecutive paths the channel sends go in one request, in order.
      if (fallback.length > 0) yield* channel.dumpNars(fallback, { hash: 'none' });
      fallback = [];
      await current?.return(undefined);
      // The lstat that found the files is the NAR's root: one system call per path, not two.
      current = batches(narFromFiles(info.path, info.path, info.narSize, { pool: buffers, rootStat }));
      yield { info, chunks: current, fromLocalFiles: true, recycle: (chunk) => buffers.give(chunk) };
    }
    if (fallback.length > 0) yield* channel.dumpNars(fallback, { hash: 'none' });
  } finally {
    await current?.return(undefined);
  }
}

function lstatOrMissing(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

async function* batches(buffers: Iterable<Buffer>): AsyncGenerator<readonly Buffer[]> {
  for (const buffer of buffers) yield [buffer];
}
