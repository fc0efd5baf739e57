/**
 * When a compressed SSH link should stop compressing one direction, and when
 * it should try again: the rule alone, over byte counts, without I/O (the
 * connection side is adaptiveCompression.ts).
 *
 * rsync skips compressing data that is already compressed; an SSH link can
 * do better per direction, because every key exchange renegotiates
 * compression for each direction apart. A direction whose payload deflate
 * shrinks by less than MIN_SAVING over a whole window of WINDOW_BYTES costs
 * the sender's CPU (deflate at zlib's level 6) for nothing, so it stops;
 * after `probeAfterBytes` uncompressed, or `probeAfterMs` with at least a
 * window's worth, it compresses again for one more window, so that later
 * compressible data (a source tarball after a video) is compressed again.
 * The time bound is for a slow link, where a GiB takes many minutes; on a
 * fast one the byte bound comes first. A look that finds nothing to
 * compress doubles the distance to the next (up to `maxBackoff` times the
 * first), and one that finds data worth compressing resets it: a long
 * incompressible copy (a 50 GiB disk image) deflates a window at its
 * sender every 1, 2, 4, 8, 8… GiB instead of every GiB.
 */

/** Payload bytes one direction has carried since the connection began: `wire` as sent, `plain` as the application sees them. */
export interface FlowBytes {
  wire: number;
  plain: number;
}

/** What the rule knows of one direction: whether it compresses now, and the counts (and time, in ms) when its current window began. */
export interface DirectionWatch {
  compressing: boolean;
  since: FlowBytes;
  sinceMs: number;
  /** Compressing again to look at new data: the window now filling says whether the look found any. */
  probing: boolean;
  /** Looks in a row that found nothing to compress. */
  failedProbes: number;
}

export interface CompressionLimits {
  /** Judge compression only over at least this much payload: one incompressible file inside compressible traffic is not enough. */
  windowBytes: number;
  /** Below this share of bytes saved (0.03: 3 %), compressing is not worth its CPU. */
  minSaving: number;
  /** Uncompressed payload after which compression is tried again. */
  probeAfterBytes: number;
  /** Or this long uncompressed, once at least a window's worth went by. */
  probeAfterMs: number;
  /** Each look that found nothing doubles both distances to the next, up to this many times the first. */
  maxBackoff: number;
}

export const DEFAULT_COMPRESSION_LIMITS: CompressionLimits = {
  windowBytes: 16 * 1024 * 1024,
  minSaving: 0.03,
  probeAfterBytes: 1024 * 1024 * 1024,
  probeAfterMs: 60_000,
  maxBackoff: 8,
};

export type CompressionVerdict =
  /** Nothing to change; `watch` is what the rule knows of the direction from now on (the same object while a window fills). */
  | { change: 'none'; watch: DirectionWatch }
  /** Stop compressing: over `plainBytes` of payload compression saved only `saving` (a share, may be negative). */
  | { change: 'stop'; plainBytes: number; saving: number }
  /** Compress again: `plainBytes` went uncompressed since compression stopped. */
  | { change: 'probe'; plainBytes: number };

/** A direction as the connection's first key exchange left it. */
export function startWatch(compressing: boolean, now: FlowBytes, nowMs: number): DirectionWatch {
  return { compressing, since: { ...now }, sinceMs: nowMs, probing: false, failedProbes: 0 };
}

/** The verdict on one direction, given its counts now. */
export function judgeDirection(watch: DirectionWatch, now: FlowBytes, nowMs: number, limits: CompressionLimits = DEFAULT_COMPRESSION_LIMITS): CompressionVerdict {
  const plainBytes = now.plain - watch.since.plain;
  if (!watch.compressing) {
    const backoff = Math.min(2 ** watch.failedProbes, Math.max(1, limits.maxBackoff));
    const due = plainBytes >= limits.probeAfterBytes * backoff || (plainBytes >= limits.windowBytes && nowMs - watch.sinceMs >= limits.probeAfterMs * backoff);
    return due ? { change: 'probe', plainBytes } : { change: 'none', watch };
  }
  if (plainBytes < limits.windowBytes) return { change: 'none', watch };
  const saving = 1 - (now.wire - watch.since.wire) / plainBytes;
  if (saving < limits.minSaving) return { change: 'stop', plainBytes, saving };
  // Worth it over this window (a look that found data to compress ends the back-off): the next window
  // starts here, so a later run of incompressible data is judged on its own.
  return { change: 'none', watch: { ...watch, since: { ...now }, sinceMs: nowMs, probing: false, failedProbes: 0 } };
}

/**
 * A direction after a key exchange turned its compression on or off: a
 * fresh window (or a fresh count towards the next look) starts with the new
 * keys. Stopping within a look's window counts that look as found nothing.
 */
export function afterSwitch(watch: DirectionWatch, compressing: boolean, now: FlowBytes, nowMs: number): DirectionWatch {
  const failedProbes = !compressing && watch.probing ? watch.failedProbes + 1 : watch.failedProbes;
  return { compressing, since: { ...now }, sinceMs: nowMs, probing: compressing, failedProbes };
}

/**
 * OpenSSH's offer (kex.c compression_alg_list): with compression on, zlib
 * first; off, `none` first. The client's order decides, so a server that
 * allows zlib compresses only when asked to. On a fast link zlib costs far
 * more CPU than it saves (see the transfer benchmark), hence off by default.
 */
export function compressionAlgorithms(on: boolean): ('none' | 'zlib@openssh.com' | 'zlib')[] {
  return on ? ['zlib@openssh.com', 'zlib', 'none'] : ['none', 'zlib@openssh.com', 'zlib'];
}
