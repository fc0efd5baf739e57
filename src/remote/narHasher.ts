import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** SHA-256 over a NAR as it streams. */
export interface NarHasher {
  /** Resolves (when it returns a promise) once the hasher can take more: its back-pressure. */
  update(chunk: Buffer): void | Promise<void>;
  digest(): Promise<Buffer>;
  /** Frees what the hasher holds; a hasher abandoned midway must be closed. */
  close(): void;
}

/** NARs smaller than this are hashed in place: a round trip to the worker would cost more. */
const WORKER_THRESHOLD = 1024 * 1024;
/** Bytes copied into one message to the worker. */
const BATCH_SIZE = 1024 * 1024;
/** Bytes handed to the worker and not yet hashed before update() makes the stream wait. */
const MAX_PENDING = 4 * BATCH_SIZE;

/**
 * A hasher for a NAR of `size` bytes. Large NARs are hashed on a worker
 * thread, so the SHA-256 of a copy runs beside the main thread's SSH
 * decryption and writes instead of after them (measured on a 1 GiB copy
 * back: see README "Benchmarks"). Chunks are copied into 1 MiB batches
 * whose memory moves to the worker without another copy.
 */
export function narHasher(size: number): NarHasher {
  if (size < WORKER_THRESHOLD) {
    const hash = createHash('sha256');
    return { update: (chunk) => void hash.update(chunk), digest: () => Promise.resolve(hash.digest()), close: () => undefined };
  }
  return new WorkerHash(sharedWorker());
}

type Reply = { kind: 'hashed'; id: number; bytes: ArrayBuffer; length: number } | { kind: 'digest'; id: number; digest: Uint8Array };

class HashWorker {
  private readonly worker: Worker;
  private readonly listeners = new Map<number, (reply: Reply) => void>();
  private failure: Error | undefined;
  private nextId = 1;

  constructor() {
    this.worker = new Worker(WORKER_SOURCE, { eval: true });
    this.worker.on('message', (reply: Reply) => this.listeners.get(reply.id)?.(reply));
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', () => this.fail(new Error('the hashing thread stopped')));
    // After the listeners, which ref it again: an idle hasher must not keep offload alive (open() refs it while it works).
    this.worker.unref();
  }

  open(listener: (reply: Reply) => void): number {
    if (this.failure) throw this.failure;
    const id = this.nextId++;
    if (this.listeners.size === 0) this.worker.ref();
    this.listeners.set(id, listener);
    return id;
  }

  close(id: number): void {
    if (this.listeners.delete(id) && this.listeners.size === 0) this.worker.unref();
  }

  send(message: { kind: 'update'; id: number; bytes: ArrayBuffer; length: number } | { kind: 'digest' | 'drop'; id: number }): void {
    if (this.failure) throw this.failure;
    this.worker.postMessage(message, message.kind === 'update' ? [message.bytes] : []);
  }

  get broken(): Error | undefined {
    return this.failure;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    if (worker === this) worker = undefined;
    for (const listener of this.listeners.values()) listener({ kind: 'digest', id: -1, digest: new Uint8Array() });
  }
}

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  let hash = hashes.get(m.id);
  if (!hash) hashes.set(m.id, (hash = createHash('sha256')));
  if (m.kind === 'update') {
    hash.update(new Uint8Array(m.bytes, 0, m.length));
    parentPort.postMessage({ kind: 'hashed', id: m.id, bytes: m.bytes, length: m.length }, [m.bytes]);
  } else if (m.kind === 'digest') {
    hashes.delete(m.id);
    parentPort.postMessage({ kind: 'digest', id: m.id, digest: hash.digest() });
  } else {
    hashes.delete(m.id);
  }
});
`;

let worker: HashWorker | undefined;
/** Batches the worker has handed back, reused so a copy allocates nothing per MiB. */
const spare: ArrayBuffer[] = [];
const MAX_SPARE = 16;

function batchBuffer(): Buffer {
  const memory = spare.pop();
  // allocUnsafeSlow: memory of its own, so handing it to the worker detaches nothing else.
  return memory ? Buffer.from(memory) : Buffer.allocUnsafeSlow(BATCH_SIZE);
}

function sharedWorker(): HashWorker {
  return (worker ??= new HashWorker());
}

class WorkerHash implements NarHasher {
  private readonly id: number;
  private batch = batchBuffer();
  private fill = 0;
  private pending = 0;
  private drained: (() => void) | undefined;
  private result: ((digest: Buffer) => void) | undefined;
  private closed = false;

  constructor(private readonly hashWorker: HashWorker) {
    this.id = hashWorker.open((reply) => this.onReply(reply));
  }

  update(chunk: Buffer): void | Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      const n = Math.min(chunk.length - at, BATCH_SIZE - this.fill);
      chunk.copy(this.batch, this.fill, at, at + n);
      this.fill += n;
      at += n;
      if (this.fill === BATCH_SIZE) this.flush();
    }
    if (this.pending <= MAX_PENDING) return;
    return new Promise((resolve) => (this.drained = resolve));
  }

  digest(): Promise<Buffer> {
    if (this.fill > 0) this.flush();
    return new Promise((resolve, reject) => {
      this.result = (digest) => {
        this.closed = true;
        this.hashWorker.close(this.id);
        const broken = this.hashWorker.broken;
        if (broken) reject(broken);
        else resolve(digest);
      };
      this.hashWorker.send({ kind: 'digest', id: this.id });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.hashWorker.close(this.id);
    if (!this.hashWorker.broken) this.hashWorker.send({ kind: 'drop', id: this.id });
  }

  private flush(): void {
    this.pending += this.fill;
    this.hashWorker.send({ kind: 'update', id: this.id, bytes: this.batch.buffer as ArrayBuffer, length: this.fill });
    this.batch = batchBuffer();
    this.fill = 0;
  }

  private onReply(reply: Reply): void {
    if (reply.kind === 'hashed') {
      this.pending -= reply.length;
      if (spare.length < MAX_SPARE) spare.push(reply.bytes);
      if (this.pending <= MAX_PENDING / 2) {
        const wake = this.drained;
        this.drained = undefined;
        wake?.();
      }
      return;
    }
    const wake = this.drained;
    this.drained = undefined;
    wake?.();
    this.result?.(Buffer.from(reply.digest));
  }
}
