import type { Machine } from '../config/machine.js';
import { decodePublicHostKey } from '../config/publicHostKey.js';
import { sha256Fingerprint } from './hostKey.js';
import { defaultKnownHostsFiles, keysForHost, knownHostsName, type KnownHostsEntry } from './knownHosts.js';

/**
 * Which host key a machine is expected to present, worked out from local
 * files only (the machines file's publicHostKey, else known_hosts), in the
 * same order SshPool checks it during the handshake. `offload machines`
 * shows it without connecting; `offload machines check` uses it to say how a
 * successful connection's key was trusted.
 */
export interface ExpectedHostKey {
  /** pinned: publicHostKey decides alone; known_hosts: listed there; none: nothing knows the key. */
  source: 'pinned' | 'known_hosts' | 'none';
  /** `<type> SHA256:…` of every acceptable key. */
  fingerprints: string[];
  /** Where the keys were found (`file:line`), or the files searched when none was. */
  from: string[];
  /** ssh_config StrictHostKeyChecking no/accept-new: an unknown key is accepted. */
  acceptUnknown: boolean;
  /** Why a pinned publicHostKey cannot match anything (it does not decode). */
  problem?: string;
}

/** The known_hosts files SshPool reads for this machine when it has no pinned key. */
export function knownHostsFilesFor(machine: Machine, defaultFiles: string[] = defaultKnownHostsFiles()): string[] {
  return machine.publicHostKey ? [] : (machine.userKnownHostsFiles ?? defaultFiles);
}

/**
 * Names OpenSSH looks the key up under: the address (with [ ]:port when not
 * 22) and, for an alias, the alias itself (what HostKeyAlias writes).
 * Mirrors SshPool's host-key policy.
 */
export function knownHostsNamesFor(machine: Machine): string[] {
  const address = machine.address || machine.hostName;
  const port = machine.port || 22;
  const aliasNames = machine.hostName === address ? [] : [knownHostsName(machine.hostName, port), machine.hostName.toLowerCase()];
  return [...new Set([knownHostsName(address, port), ...aliasNames])];
}

export function expectedHostKey(machine: Machine, entries: KnownHostsEntry[], files: string[]): ExpectedHostKey {
  const acceptUnknown = machine.acceptUnknownHostKey ?? false;
  if (machine.publicHostKey !== undefined) {
    const decoded = decodePublicHostKey(machine.publicHostKey);
    if (!decoded.ok) {
      return { source: 'pinned', fingerprints: [], from: ['publicHostKey'], acceptUnknown, problem: `its publicHostKey is ${decoded.reason}` };
    }
    return { source: 'pinned', fingerprints: [`${decoded.key.type} ${sha256Fingerprint(decoded.key.blob)}`], from: ['publicHostKey'], acceptUnknown };
  }
  const known = keysForHost(entries, knownHostsNamesFor(machine));
  if (known.keys.length === 0) return { source: 'none', fingerprints: [], from: files, acceptUnknown };
  return {
    source: 'known_hosts',
    fingerprints: [...new Set(known.keys.map((e) => `${e.keyType} ${sha256Fingerprint(e.blob)}`))],
    from: known.keys.map((e) => e.source),
    acceptUnknown,
  };
}
