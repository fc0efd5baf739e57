import type { Readable } from 'node:stream';

/** Bytes queued before the stream is paused; the source (an SSH window, a pipe) then stops too. */
const QUEUE_LIMIT = 1024 * 1024;

/**
 * The chunks of a Readable as an async iterator of batches, without the
 * copy that Readable's own iterator makes (its `read()` concatenates
 * everything buffered into one new Buffer on every call). Chunks are queued
 * as they arrive; past QUEUE_LIMIT the stream is paused, which for an SSH
 * channel stops the window adjustments and so the sender, and it resumes
 * once the reader has taken half of them. Memory per stream stays near the
 * limit plus the sender's window, whatever the total size.
 *
 * `next(atLeast)` hands over every queued chunk at once, and waits until
 * `atLeast` bytes are queued (or the stream ended, failed or was paused):
 * a reader that knows more bytes are coming (a NAR's file contents) then
 * pays its promises and checks once per batch, not once per 32 KiB SSH
 * packet. Without it, whatever is queued comes as soon as there is any.
 */
export function streamChunks(stream: Readable): AsyncIterator<Buffer[], undefined, number | undefined> & AsyncIterable<Buffer[]> {
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  /** Bytes the waiting reader asked for. */
  let wanted = 1;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer | string) => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    queue.push(bytes);
    queued += bytes.length;
    if (queued >= QUEUE_LIMIT) stream.pause();
    if (queued >= wanted || stream.isPaused()) notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (error: Error) => {
    failure ??= error;
    notify();
  };
  stream.on('data', onData);
  stream.once('end', onEnd);
  stream.once('close', onEnd);
  stream.on('error', onError);
  const detach = () => {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('close', onEnd);
    stream.off('error', onError);
  };
  const iterator = {
    async next(atLeast?: number): Promise<IteratorResult<Buffer[], undefined>> {
      wanted = Math.max(1, Math.min(atLeast ?? 1, QUEUE_LIMIT / 2));
      for (;;) {
        if (queued >= wanted || (queue.length > 0 && (ended || failure !== undefined || stream.isPaused()))) {
          const batch = queue.splice(0, queue.length);
          queued = 0;
          if (stream.isPaused() && !ended) stream.resume();
          return { value: batch, done: false };
        }
        if (failure) throw failure;
        if (ended) {
          detach();
          return { value: undefined, done: true };
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    async return(): Promise<IteratorResult<Buffer[], undefined>> {
      detach();
      queue.length = 0;
      stream.destroy();
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
