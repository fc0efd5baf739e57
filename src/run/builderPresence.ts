import type { Machine } from '../config/machine.js';
import { parsePresence, presenceQuery } from '../remote/storePresence.js';
import type { SshPool } from '../remote/sshPool.js';
import type { HoldingsSources } from './builderHoldings.js';

/** Bounds a builder too slow to list its own store: by then the run has planned without its answer anyway. */
const PRESENCE_TIMEOUT_MS = 30_000;

/**
 * HoldingsSources.present over each builder's SSH connection: one short
 * command, the paths in it or on its stdin (storePresence.ts). An answer
 * that is not complete (a command that failed midway, a shell that did not
 * run it) is "cannot tell", and Nix is asked; an SSH error is the host's,
 * as Nix's question would have met it.
 */
export function presenceOverSsh(ssh: Pick<SshPool, 'exec'>, machines: readonly Machine[], storeDir: string): NonNullable<HoldingsSources['present']> {
  const byName = new Map(machines.map((m) => [m.hostName, m]));
  return async (host, paths) => {
    const machine = byName.get(host);
    const query = presenceQuery(storeDir, paths);
    if (query === undefined || machine === undefined) return undefined;
    // The reply names at most what was asked, one per line, and two markers.
    const maxReplyBytes = paths.reduce((n, p) => n + p.length + 1, 64);
    const reply = await ssh.exec(machine, query.command, { ...(query.input ? { input: query.input } : {}), maxReplyBytes, timeoutMs: PRESENCE_TIMEOUT_MS });
    return parsePresence(reply.stdout, paths);
  };
}
