import type { Client, NegotiatedAlgorithms } from 'ssh2';
import { afterSwitch, compressionAlgorithms, judgeDirection, startWatch, type CompressionLimits, type DirectionWatch, type FlowBytes } from './compressionRule.js';

export { DEFAULT_COMPRESSION_LIMITS, type CompressionLimits } from './compressionRule.js';

/** A compressed link stopped or resumed compressing one direction. */
export interface CompressionSwitch {
  /** `download`: from the builder (its sshd compresses); `upload`: to it (offload compresses). */
  direction: 'download' | 'upload';
  compressing: boolean;
  /** The payload the decision looked at: the window judged, or what went uncompressed before a new look. */
  plainBytes: number;
  /** When it stopped: the share of bytes compression saved over that window. */
  saving?: number;
}

/** What offload's ssh2 patch (patches/ssh2+1.17.0.patch) adds to the protocol object. */
interface CountingProtocol {
  payloadBytes: { in: FlowBytes; out: FlowBytes };
  offerCompression(cs: string[], sc: string[]): void;
  rekey(): void;
  readonly rekeying: boolean;
}

/** How often the byte counts are looked at: a 16 MiB window takes ~0.2 s uncompressed on loopback. */
const LOOK_INTERVAL_MS = 100;

const compresses = (algorithm: string): boolean => algorithm !== 'none';

/**
 * Keeps a compressed connection's compression where it pays: each direction
 * the user asked to compress (and the server agreed to) stops compressing
 * when a window of its payload did not shrink (compressionRule.ts), by a
 * rekey that offers `none` first for that direction only, and compresses
 * again after a while by a rekey that offers zlib first. OpenSSH's sshd
 * takes the client's first choice at every key exchange and starts a fresh
 * deflate stream whenever one selects zlib (packet.c ssh_set_newkeys), as
 * ssh2 starts a fresh reader or writer. Returns a stop function; it stops
 * by itself when the connection closes.
 */
export function watchCompression(client: Client, negotiated: NegotiatedAlgorithms, limits: CompressionLimits, onSwitch: (change: CompressionSwitch) => void): () => void {
  const protocol = (client as unknown as { _protocol?: Partial<CountingProtocol> })._protocol;
  if (!protocol?.payloadBytes || typeof protocol.offerCompression !== 'function') return () => undefined;
  const proto = protocol as CountingProtocol;
  const counts = proto.payloadBytes;
  // Only a direction that compresses now is watched: one the server would not compress never is.
  const watched: Record<CompressionSwitch['direction'], DirectionWatch | undefined> = {
    download: compresses(negotiated.sc.compress) ? startWatch(true, counts.in, performance.now()) : undefined,
    upload: compresses(negotiated.cs.compress) ? startWatch(true, counts.out, performance.now()) : undefined,
  };
  if (!watched.download && !watched.upload) return () => undefined;
  const countsOf = (direction: CompressionSwitch['direction']): FlowBytes => (direction === 'download' ? counts.in : counts.out);
  /** The rekey asked for and not yet done: the switches it makes. */
  let pending: CompressionSwitch[] | undefined;

  const look = (): void => {
    if (pending || proto.rekeying) return;
    const switches: CompressionSwitch[] = [];
    for (const direction of ['download', 'upload'] as const) {
      const watch = watched[direction];
      if (!watch) continue;
      const now = performance.now();
      const verdict = judgeDirection(watch, countsOf(direction), now, limits);
      if (verdict.change === 'none') watched[direction] = verdict.watch;
      else if (verdict.change === 'stop') switches.push({ direction, compressing: false, plainBytes: verdict.plainBytes, saving: verdict.saving });
      else switches.push({ direction, compressing: true, plainBytes: verdict.plainBytes });
    }
    if (switches.length === 0) return;
    const wanted = (direction: CompressionSwitch['direction']): boolean => switches.find((s) => s.direction === direction)?.compressing ?? watched[direction]?.compressing ?? false;
    pending = switches;
    proto.offerCompression(compressionAlgorithms(wanted('upload')), compressionAlgorithms(wanted('download')));
    proto.rekey();
  };

  const onHandshake = (now: NegotiatedAlgorithms): void => {
    const done = pending ?? [];
    pending = undefined;
    for (const direction of ['download', 'upload'] as const) {
      const watch = watched[direction];
      if (!watch) continue;
      const compressing = compresses(direction === 'download' ? now.sc.compress : now.cs.compress);
      if (compressing !== watch.compressing) {
        watched[direction] = afterSwitch(watch, compressing, countsOf(direction), performance.now());
        const asked = done.find((s) => s.direction === direction);
        onSwitch(asked?.compressing === compressing ? asked : { direction, compressing, plainBytes: 0 });
      }
    }
  };

  const timer = setInterval(look, LOOK_INTERVAL_MS).unref();
  const stop = (): void => {
    clearInterval(timer);
    client.off('handshake', onHandshake);
  };
  client.on('handshake', onHandshake);
  client.once('close', stop);
  return stop;
}

/** `stopped compressing downloads: zlib saved 0.0 % of 16.0 MiB` — for the verbose log and the event line. */
export function describeCompressionSwitch(change: CompressionSwitch): string {
  const what = change.direction === 'download' ? 'downloads' : 'uploads';
  const size = `${(change.plainBytes / (1024 * 1024)).toFixed(1)} MiB`;
  if (!change.compressing) return `stopped compressing ${what}: zlib saved ${(Math.max(0, change.saving ?? 0) * 100).toFixed(1)} % of ${size}, not worth its CPU`;
  return change.plainBytes > 0 ? `compressing ${what} again after ${size} uncompressed, to see whether new data compresses` : `compressing ${what} again`;
}
