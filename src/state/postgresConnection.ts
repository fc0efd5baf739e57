import pg from 'pg';
import { OffloadError } from '../errors/offloadError.js';
import { scrubSecret, urlPassword, type StateLocation } from './stateLocation.js';
import { StateUnavailableError } from './stateUnavailable.js';

export type PostgresLocation = Extract<StateLocation, { kind: 'postgres' }>;

export { StateUnavailableError };

/** How long connecting may take before the state counts as unreachable. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Settings for every connection. TLS follows the URL's `sslmode` (node-postgres
 * reads it, with `sslrootcert`, `sslcert` and `sslkey`); the password may come
 * from the URL, PGPASSWORD or ~/.pgpass.
 */
export function connectionConfig(location: PostgresLocation): pg.ClientConfig {
  return {
    connectionString: location.url,
    application_name: 'offload',
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: 5_000,
  };
}

/** One sentence about a driver error, with the URL shown without its password. */
export function stateErrorMessage(location: PostgresLocation, doing: string, error: unknown): string {
  const reason = error instanceof Error ? describeDriverError(error) : String(error);
  return `${doing} the shared state at ${location.display}: ${scrubSecret(reason, urlPassword(location.url))}`;
}

function describeDriverError(error: Error): string {
  const aggregate = error as Error & { errors?: Error[] };
  // Node's happy-eyeballs connect reports every address it tried in an AggregateError with no message.
  if (error.message === '' && Array.isArray(aggregate.errors) && aggregate.errors.length > 0) {
    return aggregate.errors.map((e) => e.message).join('; ');
  }
  return error.message || error.name;
}

export function unavailable(location: PostgresLocation, doing: string, error: unknown): StateUnavailableError {
  if (error instanceof OffloadError && !(error instanceof StateUnavailableError)) throw error;
  if (error instanceof StateUnavailableError) return error;
  return new StateUnavailableError(stateErrorMessage(location, doing, error), { cause: error });
}

/** Connects one client, or fails with a StateUnavailableError naming the URL without its password. */
export async function connectClient(location: PostgresLocation): Promise<pg.Client> {
  const client = new pg.Client(connectionConfig(location));
  // Until the owner attaches its own handler, a dropped connection must not crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw unavailable(location, 'cannot reach', error);
  }
  return client;
}

/** A small pool for short queries (history); errors of idle clients are dropped, the next query reconnects. */
export function createPool(location: PostgresLocation, max = 3): pg.Pool {
  const pool = new pg.Pool({ ...connectionConfig(location), max, idleTimeoutMillis: 10_000 });
  pool.on('error', () => undefined);
  return pool;
}

/** Whether an error means the connection (not the query) failed, so trying again later may work. */
export function isConnectionError(error: unknown): boolean {
  if (error instanceof StateUnavailableError) return true;
  const e = error as { code?: string; message?: string } | undefined;
  const code = e?.code ?? '';
  // Class 08: connection exceptions; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
  if (/^08/.test(code) || /^57P0[123]$/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code)) return true;
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable|ended/i.test(e?.message ?? '');
}
