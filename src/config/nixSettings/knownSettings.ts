/**
 * The Nix settings offload reads, with their names, aliases and types as in
 * Nix 2.8 (libstore/globals.hh), plus max-substitution-jobs from later Nix.
 * Every other setting is kept as text (NixConfig.other).
 */
export type SettingKind =
  /** true/false (also yes/no, 1/0). */
  | 'bool'
  /** An unsigned whole number. */
  | 'uint'
  /** A signed whole number (time_t in Nix). */
  | 'int'
  /** Text, taken as written. */
  | 'string'
  /** Words in the order written; `extra-NAME` appends. */
  | 'list'
  /** Words as a sorted set (std::set in Nix); `extra-NAME` adds. */
  | 'set'
  /** A whole number or `auto` (the number of CPUs). */
  | 'maxJobs';

export interface SettingDefinition {
  name: string;
  aliases: readonly string[];
  kind: SettingKind;
}

const define = <K extends SettingKind>(name: string, kind: K, aliases: readonly string[] = []) => ({ name, kind, aliases });

export const KNOWN_SETTINGS = {
  system: define('system', 'string'),
  extraPlatforms: define('extra-platforms', 'set'),
  systemFeatures: define('system-features', 'set'),
  maxJobs: define('max-jobs', 'maxJobs', ['build-max-jobs']),
  cores: define('cores', 'uint', ['build-cores']),
  builders: define('builders', 'string'),
  buildersUseSubstitutes: define('builders-use-substitutes', 'bool'),
  maxSilentTime: define('max-silent-time', 'int', ['build-max-silent-time']),
  timeout: define('timeout', 'int', ['build-timeout']),
  keepGoing: define('keep-going', 'bool'),
  substitute: define('substitute', 'bool', ['build-use-substitutes']),
  substituters: define('substituters', 'list', ['binary-caches']),
  trustedSubstituters: define('trusted-substituters', 'set', ['trusted-binary-caches']),
  trustedPublicKeys: define('trusted-public-keys', 'list', ['binary-cache-public-keys']),
  requireSigs: define('require-sigs', 'bool'),
  secretKeyFiles: define('secret-key-files', 'list'),
  trustedUsers: define('trusted-users', 'list'),
  maxSubstitutionJobs: define('max-substitution-jobs', 'uint', ['substitution-max-jobs']),
  fallback: define('fallback', 'bool', ['build-fallback']),
  connectTimeout: define('connect-timeout', 'uint'),
  stalledDownloadTimeout: define('stalled-download-timeout', 'uint'),
  downloadAttempts: define('download-attempts', 'uint'),
  httpConnections: define('http-connections', 'uint', ['binary-caches-parallel-connections']),
  narinfoCacheNegativeTtl: define('narinfo-cache-negative-ttl', 'uint'),
  narinfoCachePositiveTtl: define('narinfo-cache-positive-ttl', 'uint'),
  netrcFile: define('netrc-file', 'string'),
  store: define('store', 'string'),
} as const;

export type SettingKey = keyof typeof KNOWN_SETTINGS;

type ValueOfKind<K extends SettingKind> = K extends 'bool' ? boolean : K extends 'uint' | 'int' | 'maxJobs' ? number : K extends 'string' ? string : string[];

/** The value type of each known setting. */
export type SettingValues = { [K in SettingKey]: ValueOfKind<(typeof KNOWN_SETTINGS)[K]['kind']> };

/** What Nix defaults to that depends on the machine it runs on. */
export interface MachineDefaults {
  system: string;
  extraPlatforms: string[];
  systemFeatures: string[];
  /** What `auto` means for max-jobs: the number of online CPUs (std::thread::hardware_concurrency). */
  cpus: number;
  /** Where these came from, e.g. "nix show-config". */
  source: string;
}

/** Nix's value for every known setting that no configuration sets. */
export function defaultValues(confDir: string, machine: MachineDefaults, nixRemote?: string): SettingValues {
  return {
    system: machine.system,
    extraPlatforms: sortedSet(machine.extraPlatforms),
    systemFeatures: sortedSet(machine.systemFeatures),
    maxJobs: 1,
    cores: machine.cpus,
    builders: `@${confDir}/machines`,
    buildersUseSubstitutes: false,
    maxSilentTime: 0,
    timeout: 0,
    keepGoing: false,
    substitute: true,
    substituters: ['https://cache.nixos.org/'],
    trustedSubstituters: [],
    trustedPublicKeys: ['cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY='],
    requireSigs: true,
    secretKeyFiles: [],
    trustedUsers: ['root'],
    maxSubstitutionJobs: 16,
    fallback: false,
    connectTimeout: 0,
    stalledDownloadTimeout: 300,
    downloadAttempts: 5,
    httpConnections: 25,
    narinfoCacheNegativeTtl: 3600,
    narinfoCachePositiveTtl: 30 * 24 * 3600,
    netrcFile: `${confDir}/netrc`,
    store: nixRemote ?? 'auto',
  };
}

/** std::set<std::string> order: unique, sorted by bytes. */
export function sortedSet(items: readonly string[]): string[] {
  return [...new Set(items)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

const byName = new Map<string, SettingKey>(
  (Object.keys(KNOWN_SETTINGS) as SettingKey[]).flatMap((key) => [KNOWN_SETTINGS[key].name, ...KNOWN_SETTINGS[key].aliases].map((name) => [name, key] as const)),
);

/** The known setting a name (or alias) in nix.conf stands for. */
export function settingKeyOf(name: string): SettingKey | undefined {
  return byName.get(name);
}

export function isAppendable(kind: SettingKind): boolean {
  return kind === 'list' || kind === 'set';
}

export type ParsedValue = { ok: true; value: SettingValues[SettingKey] } | { ok: false; reason: string };

/**
 * A setting's new value from the text after "=", as Nix's BaseSetting::set
 * reads it; `previous` is extended when `append` (an `extra-` name).
 */
export function parseSettingValue(kind: SettingKind, text: string, append: boolean, previous: SettingValues[SettingKey], cpus: number): ParsedValue {
  const words = text.split(' ').filter((word) => word !== '');
  switch (kind) {
    case 'bool':
      if (['true', 'yes', '1'].includes(text)) return { ok: true, value: true };
      if (['false', 'no', '0'].includes(text)) return { ok: true, value: false };
      return { ok: false, reason: 'expected true or false' };
    case 'uint':
      return /^\+?\d+$/.test(text) && Number(text) <= Number.MAX_SAFE_INTEGER ? { ok: true, value: Number(text) } : { ok: false, reason: 'expected a whole number ≥ 0' };
    case 'int':
      return /^[+-]?\d+$/.test(text) && Math.abs(Number(text)) <= Number.MAX_SAFE_INTEGER ? { ok: true, value: Number(text) } : { ok: false, reason: 'expected a whole number' };
    case 'maxJobs':
      if (text === 'auto') return { ok: true, value: Math.max(1, cpus) };
      return /^\+?\d+$/.test(text) && Number(text) <= 0xffffffff ? { ok: true, value: Number(text) } : { ok: false, reason: "expected 'auto' or a whole number ≥ 0" };
    case 'string':
      return { ok: true, value: text };
    case 'list':
      return { ok: true, value: append ? [...(previous as string[]), ...words] : words };
    case 'set':
      return { ok: true, value: sortedSet(append ? [...(previous as string[]), ...words] : words) };
  }
}
