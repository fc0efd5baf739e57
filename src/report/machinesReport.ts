import { formatPressure } from '../remote/builderPressure.js';
import type { LocalSettings, Machine } from '../config/machine.js';
import { describeRoute, routeOf } from '../config/sshEndpoints.js';
import type { Severity } from '../remote/builderClaims.js';
import type { BuilderCheck } from '../remote/builderProbe.js';
import { formatKiB } from '../format/size.js';
import type { Verdict } from '../remote/builderVerdict.js';
import type { ExpectedHostKey } from '../remote/expectedHostKey.js';
import type { KeyReport, LocalTrust } from '../remote/trustFindings.js';
import { renderTable, wrapLongLines } from './table.js';

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
      route: routeOf(m),
      user: m.sshUser ?? null,
      keyFile: m.sshKey ?? null,
      identityFiles: m.identityFiles ?? [],
      ...(keyFileProblem !== undefined && { keyFileProblem }),
      systems: m.systems,
      supportedFeatures: m.supportedFeatures,
      mandatoryFeatures: m.mandatoryFeatures,
      maxJobs: m.maxJobs,
      speedFactor: m.speedFactor,
      origin: m.origin ?? input.source,
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
      maxSilentTime: input.local.maxSilentTime,
      buildTimeout: input.local.buildTimeout,
      origins: input.local.origins,
    },
  };
}

/** Where each machine and each local setting came from, one row each, under the machines table. */
function originTable(input: MachinesListInput, width: number | undefined): string {
  const { origins } = input.local;
  const rows = [
    ...input.machines.map(({ machine }) => [machine.hostName, machine.origin ?? input.source]),
    ['(local) max-jobs', origins.maxJobs],
    ['(local) systems', origins.systems],
    ['(local) system-features', origins.supportedFeatures],
    ['(local) builders-use-substitutes', origins.buildersUseSubstitutes],
    ['(local) speed', origins.speedFactor],
    [`max-silent-time ${input.local.maxSilentTime || 'none'}`, origins.maxSilentTime],
    [`timeout ${input.local.buildTimeout || 'none'}`, origins.buildTimeout],
  ];
  return renderTable(['WHAT', 'FROM'], rows, new Set(), { width, wrap: ['FROM'] });
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

/** Where the SSH connection ends, and what it goes through to get there. */
const where = (m: Machine) => {
  const target = m.address.includes(':') ? `[${m.address}]:${m.port}` : `${m.address}:${m.port}`;
  const route = describeRoute(m);
  return route === undefined ? target : `${target} ${route}`;
};

/** How text reports are drawn: colours, and the window width on a terminal (none for pipes and files). */
export interface TextOptions {
  color: boolean;
  width?: number;
}

export function machinesListToText(input: MachinesListInput, opts: TextOptions): string {
  const bold = (s: string) => (opts.color ? `\x1b[1m${s}\x1b[22m` : s);
  const rows = input.machines.map(({ machine: m, hostKey, keyFileProblem }) => [
    m.hostName,
    where(m),
    m.sshUser ?? '-',
    list(m.systems),
    featuresCell(m.supportedFeatures, m.mandatoryFeatures),
    String(m.maxJobs),
    String(m.speedFactor),
    m.sshKey !== undefined
      ? keyFileProblem === undefined ? m.sshKey : `${m.sshKey} (refused, see below)`
      : m.identityFiles?.length ? m.identityFiles.join(', ') : '(ssh defaults)',
    hostKeyCell(hostKey),
  ]);
  const local = input.local;
  rows.push(['(local)', '-', '-', list(local.systems), list(local.supportedFeatures), String(local.maxJobs), String(local.speedFactor), '-', '-']);
  const header = ['HOST', 'CONNECTS TO', 'USER', 'SYSTEMS', 'FEATURES', 'JOBS', 'SPEED', 'KEY', 'HOST KEY'];
  const lines = [
    bold(`Machines from ${input.source}`),
    '',
    // Narrow windows: long cells wrap, then the widest columns move below the table.
    renderTable(header, rows, new Set([5, 6]), { width: opts.width, wrap: ['CONNECTS TO', 'SYSTEMS', 'FEATURES', 'KEY', 'HOST KEY'], dropOrder: ['KEY', 'USER', 'HOST KEY', 'CONNECTS TO'] }),
    '',
    'FEATURES: * = mandatory (only derivations requiring it go there).' +
      (local.maxJobs === 0 ? ' Local: 0 slots, builds locally only builtin: derivations.' : ''),
  ];
  lines.push('', originTable(input, opts.width));
  for (const { machine, keyFileProblem } of input.machines) {
    if (keyFileProblem !== undefined) lines.push(`${machine.hostName}: ${keyFileProblem}`);
  }
  for (const warning of input.warnings) lines.push(`warning: ${warning}`);
  return wrapLongLines(lines.join('\n'), opts.width);
}

export interface MachinesCheckInput {
  source: string;
  timeoutMs: number;
  checks: readonly BuilderCheck[];
  /** The local store's side of copying outputs back. */
  localTrust?: LocalTrust;
}

/** The `offload machines check --json` shape: one entry per machine, in the machines file's order. */
export function machinesCheckToJson(input: MachinesCheckInput): object {
  const unusable = input.checks.filter((c) => c.verdict === 'unusable').map((c) => c.hostName);
  return {
    source: input.source,
    timeoutSeconds: input.timeoutMs / 1000,
    usable: input.checks.length - unusable.length,
    unusable,
    local: input.localTrust
      ? {
          user: input.localTrust.user,
          unsignedImports: input.localTrust.unsignedImports ?? null,
          trustedPublicKeys: input.localTrust.trustedPublicKeys,
        }
      : null,
    machines: input.checks.map((c) => ({
      hostName: c.hostName,
      address: c.address,
      port: c.port,
      user: c.user ?? null,
      verdict: c.verdict,
      reason: c.reason ?? null,
      reachable: c.reachable ?? null,
      connectMs: c.connectMs ?? null,
      authenticated: c.authenticated,
      hostKey: c.hostKey,
      nixVersion: c.nixVersion ?? null,
      serveProtocol: c.serveProtocol ?? null,
      nix: c.nix ?? null,
      claims: c.claims,
      load: c.load ?? null,
      store: c.store ?? null,
      pressure: c.pressure ?? null,
      signingKeys: c.signingKeys ?? null,
      postBuildHook: c.postBuildHook ?? null,
      unsignedImports: c.unsignedImports ?? null,
      findings: c.findings,
    })),
  };
}

const SEVERITY_ORDER: Record<Severity, number> = { unusable: 0, warning: 1, note: 2 };

export function machinesCheckToText(input: MachinesCheckInput, opts: TextOptions): string {
  const paint = (code: number, s: string) => (opts.color ? `\x1b[${code}m${s}\x1b[39m` : s);
  const verdictColour = (v: Verdict) => (v === 'ok' ? 32 : v === 'warning' ? 33 : 31);
  const rows = input.checks.map((c) => [
    c.hostName,
    c.verdict,
    c.connectMs !== undefined ? `${c.connectMs} ms` : c.reachable === false ? 'unreachable' : '-',
    c.hostKey.status,
    c.nixVersion ?? '-',
    c.serveProtocol ?? '-',
    c.nix ? [c.nix.system, ...c.nix.extraPlatforms.map((p) => `+${p}`)].join(',') : '-',
    c.nix ? list(c.nix.systemFeatures) : '-',
    c.load ? c.load.perCpu.toFixed(2) : '-',
    c.store ? formatKiB(c.store.availableKiB) : '-',
    c.pressure ? formatPressure(c.pressure) || '-' : '-',
    signsCell(c.signingKeys, c.postBuildHook),
  ]);
  const header = ['HOST', 'VERDICT', 'CONNECT', 'HOST KEY', 'NIX', 'SERVE', 'BUILDS (+extra-platforms)', 'SYSTEM-FEATURES', 'LOAD/CPU', 'STORE FREE', 'PRESSURE', 'SIGNS WITH'];
  const table = renderTable(header, rows, new Set([2, 8, 9]), {
    width: opts.width,
    wrap: ['HOST KEY', 'BUILDS (+extra-platforms)', 'SYSTEM-FEATURES', 'PRESSURE', 'SIGNS WITH'],
    dropOrder: ['LOAD/CPU', 'SERVE', 'SIGNS WITH', 'STORE FREE', 'PRESSURE'],
    style: (row, column, text) => (column === 1 ? paint(verdictColour(input.checks[row]!.verdict), text) : text),
  });
  const lines = [`Checked ${input.checks.length} machine${input.checks.length === 1 ? '' : 's'} from ${input.source}`, '', table];
  if (input.localTrust) lines.push('', localTrustLine(input.localTrust));
  const findings = input.checks.flatMap((c) =>
    [...c.findings].sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]).map((f) => ({ host: c.hostName, ...f })),
  );
  if (findings.length > 0) lines.push('');
  for (const f of findings) {
    const label = f.severity === 'unusable' ? paint(31, 'unusable') : f.severity === 'warning' ? paint(33, 'warning') : 'note';
    lines.push(`${f.host}: ${label}: ${f.message}`);
  }
  lines.push('', summary(input.checks));
  return wrapLongLines(lines.join('\n'), opts.width);
}

/** Each signing key by name, with whether the local store trusts it. */
function signsCell(keys: readonly KeyReport[] | undefined, postBuildHook: string | undefined): string {
  if (keys === undefined) return '-';
  const named = keys.map((k) =>
    k.publicKey === undefined ? `? (${k.file} unreadable)` : `${k.publicKey.slice(0, k.publicKey.indexOf(':'))} (${k.trustedLocally ? 'trusted' : 'not trusted'})`,
  );
  if (postBuildHook !== undefined) named.push('post-build-hook?');
  return named.length === 0 ? 'nothing' : named.join(', ');
}

/** What the local store takes from this user: everything, or signed paths only. */
function localTrustLine(local: LocalTrust): string {
  const imports = local.unsignedImports;
  if (imports === undefined) return `Local store: not asked whether it takes unsigned paths from ${local.user} (no local Nix?).`;
  if (imports.accepted) return `Local store: takes unsigned paths from ${local.user} (a trusted user, or a store of its own), so builders need not sign.`;
  const keys = local.trustedPublicKeys.length > 0 ? local.trustedPublicKeys.map((k) => k.slice(0, k.indexOf(':'))).join(', ') : 'none';
  return `Local store: takes paths from ${local.user} only with a signature by a key in its trusted-public-keys (${keys}); it said: ${imports.reason}.`;
}

function summary(checks: readonly BuilderCheck[]): string {
  if (checks.length === 0) return 'No machines configured: nothing to check.';
  const unusable = checks.filter((c) => c.verdict === 'unusable').map((c) => c.hostName);
  const warnings = checks.filter((c) => c.verdict === 'warning').length;
  const usable = checks.length - unusable.length;
  const warned = warnings > 0 ? ` (${warnings} with warnings)` : '';
  const bad = unusable.length > 0 ? `; unusable: ${unusable.join(', ')}` : '';
  return `${usable} of ${checks.length} machines usable${warned}${bad}.`;
}
