import { PostgresSlotLeases } from '../../src/slots/postgresSlotLeases.js';
import type { SlotLeases } from '../../src/slots/slotLeases.js';
import { SqliteSlotLeases } from '../../src/slots/sqliteSlotLeases.js';
import { parseStateUrl } from '../../src/state/stateLocation.js';

/**
 * A separate runner process holding build slots until it is killed, for the
 * slot lease contract (test/support/slotLeasesContract.ts). Run as
 *   node --import tsx test/support/leaseWorker.ts '<WorkerConfig JSON>'
 * It prints `held <n>` once it holds its leases, then waits to be killed.
 */
export interface WorkerConfig {
  /** A SQLite file, or a postgres:// URL. */
  store: string;
  host: string;
  maxJobs: number;
  leases: number;
}

const config = JSON.parse(process.argv[2] ?? '') as WorkerConfig;
const location = config.store.startsWith('postgres') ? parseStateUrl(config.store, 'worker') : undefined;
const slots: SlotLeases = location?.kind === 'postgres' ? await PostgresSlotLeases.open(location) : new SqliteSlotLeases({ file: config.store });
const granted = await slots.exchange({
  release: [],
  requests: Array.from({ length: config.leases }, () => ({ host: config.host, maxJobs: config.maxJobs, priority: 1 })),
  waiting: new Map(),
});
process.stdout.write(`held ${granted.filter(Boolean).length}\n`);
setInterval(() => undefined, 60_000);
