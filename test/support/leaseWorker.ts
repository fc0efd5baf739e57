import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { SlotLeases, type SlotLease } from '../../src/run/slotLeases.js';

/**
 * One separate process taking build slot leases, for
 * test/integration/slotLeasesProcesses.test.ts. Run as
 *   node --import tsx test/support/leaseWorker.ts '<WorkerConfig JSON>'
 *
 * stdout lines: `ready` once the file is open, `acquired <slot>` per lease,
 * `held` when a `hold` worker has all its leases. With `waitForGo` it starts
 * only after reading a line on stdin, so all workers contend at once.
 */
export interface WorkerConfig {
  name: string;
  file: string;
  host: string;
  maxJobs: number;
  leases: number;
  /** `cycle`: acquire, hold holdMs, release, one lease at a time. `hold`: acquire all, then sleep until killed. */
  mode: 'cycle' | 'hold';
  holdMs?: [number, number];
  /** Appends one JSON line per acquire and release: { worker, event, slot, t }. */
  log?: string;
  waitForGo?: boolean;
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
function now(): number {
  return performance.timeOrigin + performance.now();
}

function record(config: WorkerConfig, event: 'acquire' | 'release', slot: number): void {
  if (config.log) appendFileSync(config.log, `${JSON.stringify({ worker: config.name, event, slot, t: now() })}\n`);
}

async function waitForGo(): Promise<void> {
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => lines.once('line', () => resolve()));
  lines.close();
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '') as WorkerConfig;
  const slots = new SlotLeases({ file: config.file });
  process.stdout.write('ready\n');
  if (config.waitForGo) await waitForGo();
  const [minHold, maxHold] = config.holdMs ?? [0, 0];
  const held: SlotLease[] = [];
  for (let i = 0; i < config.leases; i++) {
    const lease = await slots.acquire(config.host, config.maxJobs);
    // Logged after the grant and (below) before the release: the logged span lies inside the real one.
    record(config, 'acquire', lease.slot);
    process.stdout.write(`acquired ${lease.slot}\n`);
    if (config.mode === 'hold') {
      held.push(lease);
      continue;
    }
    await new Promise((resolve) => setTimeout(resolve, minHold + Math.random() * (maxHold - minHold)));
    record(config, 'release', lease.slot);
    lease.release();
  }
  if (config.mode === 'hold') {
    process.stdout.write('held\n');
    setInterval(() => undefined, 60_000);
    return;
  }
  slots.close();
}

await main();
