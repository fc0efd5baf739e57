import type { LocalSettings, Machine } from '../config/machine.js';
import type { ExpectedHostKey } from '../remote/expectedHostKey.js';
import { renderTable } from './table.js';

/** One configured machine as `offload machines` shows it: the config plus local facts about its keys. */
export interface MachineListing {
  machine: Machine;
  hostKey: ExpectedHostKey;
  /** Why ssh would refuse the private key (missing, unreadable, group/world-readable). */
  keyFileProblem?: string;
}

export interface MachinesListInput {
  source: string;
  warnings: readonly string[];
  machines: readonly MachineListing[];
  local: LocalSettings;
}

/** The `offload machines --json` shape. */
export function machinesListToJson(input: MachinesListInput): object {
  return {
    source: input.source,
    warnings: input.warnings,
    machines: input.machines.map(({ machine: m, hostKey, keyFileProblem }) => ({
      hostName: m.hostName,
      address: m.address,
      port: m.port,
      user: m.sshUser ?? null,
      keyFile: m.sshKey ?? null,
      identityFiles: m.identityFiles ?? [],
      ...(keyFileProblem !== undefined && { keyFileProblem }),
      systems: m.systems,
      supportedFeatures: m.supportedFeatures,
      mandatoryFeatures: m.mandatoryFeatures,
      maxJobs: m.maxJobs,
      speedFactor: m.speedFactor,
      hostKey: {
        source: hostKey.source,
        fingerprints: hostKey.fingerprints,
        from: hostKey.from,
        acceptUnknown: hostKey.acceptUnknown,
        ...(hostKey.problem !== undefined && { problem: hostKey.problem }),
      },
    })),
    local: {
      maxJobs: input.local.maxJobs,
      speedFactor: input.local.speedFactor,
      systems: input.local.systems,
      supportedFeatures: input.local.supportedFeatures,
      buildersUseSubstitutes: input.local.buildersUseSubstitutes,
    },
  };
}

const list = (items: readonly string[]) => (items.length > 0 ? items.join(',') : '-');

/** Supported features, mandatory ones marked with `*` (mandatory implies supported). */
export function featuresCell(supported: readonly string[], mandatory: readonly string[]): string {
  const all = [...new Set([...supported, ...mandatory])];
  return list(all.map((f) => (mandatory.includes(f) ? `${f}*` : f)));
}

export function hostKeyCell(key: ExpectedHostKey): string {
  if (key.problem !== undefined) return `pinned, unusable: ${key.problem}`;
  if (key.source === 'pinned') return `pinned ${key.fingerprints[0] ?? ''}`;
  if (key.source === 'known_hosts') {
    const more = key.fingerprints.length > 1 ? ` (+${key.fingerprints.length - 1} more)` : '';
    return `known_hosts ${key.fingerprints[0] ?? ''}${more}`;
  }
  return key.acceptUnknown ? 'not pinned, unknown keys accepted (StrictHostKeyChecking)' : 'not pinned, not in known_hosts: will be refused';
}

const where = (m: Machine) => (m.address.includes(':') ? `[${m.address}]:${m.port}` : `${m.address}:${m.port}`);

export function machinesListToText(input: MachinesListInput, opts: { color: boolean }): string {
  const bold = (s: string) => (opts.color ? `\x1b[1m${s}\x1b[22m` : s);
  const rows = input.machines.map(({ machine: m, hostKey, keyFileProblem }) => [
    m.hostName,
    where(m),
    m.sshUser ?? '-',
    list(m.systems),
    featuresCell(m.supportedFeatures, m.mandatoryFeatures),
    String(m.maxJobs),
    String(m.speedFactor),
    m.sshKey === undefined ? '(ssh defaults)' : keyFileProblem === undefined ? m.sshKey : `${m.sshKey} (refused, see below)`,
    hostKeyCell(hostKey),
  ]);
  const local = input.local;
  rows.push(['(local)', '-', '-', list(local.systems), list(local.supportedFeatures), String(local.maxJobs), String(local.speedFactor), '-', '-']);
  const header = ['HOST', 'CONNECTS TO', 'USER', 'SYSTEMS', 'FEATURES', 'JOBS', 'SPEED', 'KEY', 'HOST KEY'];
  const lines = [
    bold(`Machines from ${input.source}`),
    '',
    renderTable(header, rows, new Set([5, 6])),
    '',
    'FEATURES: * = mandatory (only derivations requiring it go there).' +
      (local.maxJobs === 0 ? ' Local: 0 slots, builds locally only builtin: derivations.' : ''),
  ];
  for (const { machine, keyFileProblem } of input.machines) {
    if (keyFileProblem !== undefined) lines.push(`${machine.hostName}: ${keyFileProblem}`);
  }
  for (const warning of input.warnings) lines.push(`warning: ${warning}`);
  return lines.join('\n');
}
