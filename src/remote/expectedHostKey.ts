import type { SshEndpoint } from '../config/machine.js';
import { decodePublicHostKey } from '../config/publicHostKey.js';
import { sha256Fingerprint, type HostKeyPolicy } from './hostKey.js';
import { DEFAULT_GLOBAL_KNOWN_HOSTS_FILES, defaultUserKnownHostsFiles, keysForHost, knownHostsName, loadKnownHosts, type KnownHostsEntry } from './knownHosts.js';

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

/** The user's known_hosts files for this machine: ssh_config UserKnownHostsFile, else the defaults. The first is where new keys are recorded. */
export function userKnownHostsFilesFor(machine: SshEndpoint, userDefaults: readonly string[] = defaultUserKnownHostsFiles()): string[] {
  return [...(machine.userKnownHostsFiles ?? userDefaults)];
}

/**
 * The known_hosts files SshPool reads for this machine when it has no pinned
 * key: the user's, then the global ones, which ssh reads whatever
 * UserKnownHostsFile says (so their @revoked lines always apply).
 */
export function knownHostsFilesFor(
  machine: SshEndpoint,
  userDefaults: readonly string[] = defaultUserKnownHostsFiles(),
  globalDefaults: readonly string[] = DEFAULT_GLOBAL_KNOWN_HOSTS_FILES,
): string[] {
  if (machine.publicHostKey) return [];
  return [...new Set([...userKnownHostsFilesFor(machine, userDefaults), ...(machine.globalKnownHostsFiles ?? globalDefaults)])];
}

/**
 * The one name OpenSSH looks the key up under (get_hostfile_hostname_ipaddr):
 * HostKeyAlias when set, else the HostName it connects to, as `[host]:port`
 * when the port is not 22. The alias from the machines file is never used by
 * itself: a key recorded for `builder` must not vouch for whatever address
 * and port `builder` points at today. SshPool checks and records under this.
 */
export function knownHostsNamesFor(machine: SshEndpoint): string[] {
  if (machine.hostKeyAlias) return [machine.hostKeyAlias.toLowerCase()];
  return [knownHostsName(machine.address || machine.hostName, machine.port || 22)];
}

export function expectedHostKey(machine: SshEndpoint, entries: KnownHostsEntry[], files: string[]): ExpectedHostKey {
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

/** What SshPool checks the offered host key against: the pinned key, else the known_hosts entries for the machine's names. */
export function hostKeyPolicy(machine: SshEndpoint, userDefaults: string[], globalDefaults: string[], label = machine.hostName): HostKeyPolicy {
  const address = machine.address || machine.hostName;
  const port = machine.port || 22;
  const knownHostsFiles = knownHostsFilesFor(machine, userDefaults, globalDefaults);
  const entries = loadKnownHosts(knownHostsFiles);
  const names = knownHostsNamesFor(machine);
  return {
    host: label,
    address,
    port,
    ...(machine.publicHostKey ? { pinned: machine.publicHostKey } : {}),
    known: keysForHost(entries, names),
    knownHostsFiles,
    acceptUnknown: machine.acceptUnknownHostKey ?? false,
  };
}
