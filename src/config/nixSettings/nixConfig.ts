import { homedir } from 'node:os';
import { NixConfError } from '../errors.js';
import { readIfExists } from '../readIfExists.js';
import {
  defaultValues,
  isAppendable,
  KNOWN_SETTINGS,
  parseSettingValue,
  settingKeyOf,
  type MachineDefaults,
  type SettingKey,
  type SettingValues,
} from './knownSettings.js';
import { machineDefaults } from './machineDefaults.js';
import { nixConfLocations, type NixConfLocations } from './nixConfLocations.js';
import { describePlace, parseNixConf, UnreadableConfFile, type Assignment, type ConfFileReader, type ConfPlace } from './nixConfSyntax.js';

/** Where a setting's value came from. */
export type SettingOrigin =
  /** Nix's default; `detail` says how offload learned a machine-dependent one. */
  | { kind: 'default'; detail?: string }
  /** A line of a file or of NIX_CONFIG; `as` is the name written there (an alias, or `extra-…`). */
  | (ConfPlace & { as: string })
  /** An offload command-line option. */
  | { kind: 'flag'; flag: string };

/** A value and where it came from: the place that set it, then each `extra-` that added to it. */
export interface Sourced<T> {
  value: T;
  origins: SettingOrigin[];
}

export type NixSettings = { readonly [K in SettingKey]: Sourced<SettingValues[K]> };

export interface NixConfig {
  /** The settings offload reads, typed, each with its origin. */
  settings: NixSettings;
  /** Every other setting written somewhere, as text (Nix joins the words with single spaces). */
  other: ReadonlyMap<string, Sourced<string>>;
  locations: NixConfLocations;
  /** The files whose settings were applied, in the order Nix applies them (includes listed after their includer). */
  filesRead: string[];
  /** What Nix would warn about or skip silently (an unreadable file, an `extra-` on a setting that has none). */
  warnings: string[];
}

export interface ReadNixConfigOptions {
  env?: NodeJS.ProcessEnv;
  homeDir?: string;
  /** Reads a file; undefined when missing. Defaults to the file system. */
  readFile?: ConfFileReader;
  /** Defaults to asking the installed Nix (see machineDefaults). */
  machineDefaults?: MachineDefaults;
  /** Where the installed Nix's answer is kept between runs (machineDefaultsCache.ts); asked every time without. */
  machineDefaultsCache?: string;
}

/**
 * The user's Nix settings, read from every place Nix reads them and in the
 * same order (Nix 2.8, libstore/globals.cc loadConfFile):
 *   1. $NIX_CONF_DIR/nix.conf (default /etc/nix/nix.conf);
 *   2. the user files, $NIX_USER_CONF_FILES (colon-separated) or else
 *      $XDG_CONFIG_HOME/nix/nix.conf (~/.config/nix/nix.conf) and each
 *      $XDG_CONFIG_DIRS/nix/nix.conf (/etc/xdg), the first listed winning;
 *   3. $NIX_CONFIG.
 * A later assignment replaces an earlier one; `extra-NAME` appends to a list.
 * A missing or unreadable file is skipped, as Nix does; a line Nix would
 * refuse is a NixConfError naming the file and line.
 */
export async function readNixConfig(options: ReadNixConfigOptions = {}): Promise<NixConfig> {
  const env = options.env ?? process.env;
  const locations = nixConfLocations(env, options.homeDir ?? homedir());
  return applyNixConfig(locations, options.readFile ?? readIfExists, options.machineDefaults ?? (await machineDefaults(options.machineDefaultsCache !== undefined ? { cacheFile: options.machineDefaultsCache } : {})));
}

/** Pure given its reader: the settings that `locations` produce on a machine with these defaults. */
export function applyNixConfig(locations: NixConfLocations, read: ConfFileReader, machine: MachineDefaults): NixConfig {
  const warnings: string[] = [];
  const filesRead: string[] = [];
  const pieces: Assignment[][] = [];
  const topFile = (path: string) => {
    try {
      const text = read(path);
      if (text === undefined) return;
      const assignments = parseNixConf(text, { kind: 'file', path }, read);
      pieces.push(assignments);
      filesRead.push(...new Set([path, ...assignments.map((a) => (a.place.kind === 'file' ? a.place.path : path))]));
    } catch (error) {
      if (error instanceof UnreadableConfFile) {
        warnings.push(`${path} was skipped, as Nix skips it: ${error.message}`);
        return;
      }
      if (error instanceof NixConfError) throw error;
      warnings.push(`${path} was skipped, as Nix skips it: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  };
  topFile(locations.systemFile);
  for (const file of [...locations.userFiles].reverse()) topFile(file);
  if (locations.nixConfig !== undefined) {
    try {
      pieces.push(parseNixConf(locations.nixConfig, { kind: 'variable', variable: 'NIX_CONFIG' }, read));
    } catch (error) {
      // Nix fails outright here: NIX_CONFIG is applied outside the file reader that forgives.
      if (error instanceof UnreadableConfFile) throw new NixConfError(`NIX_CONFIG includes ${error.message}`, { cause: error });
      throw error;
    }
  }

  const defaults = defaultValues(locations.confDir, machine, locations.nixRemote);
  const machineDependent = new Set<SettingKey>(['system', 'extraPlatforms', 'systemFeatures', 'cores']);
  const settings = Object.fromEntries(
    (Object.keys(defaults) as SettingKey[]).map((key) => [
      key,
      { value: defaults[key], origins: [machineDependent.has(key) ? { kind: 'default', detail: machine.source } : { kind: 'default' }] },
    ]),
  ) as Record<SettingKey, Sourced<SettingValues[SettingKey]>>;
  const other = new Map<string, Sourced<string>>();

  for (const assignment of pieces.flat()) {
    const origin: SettingOrigin = { ...assignment.place, as: assignment.name };
    const direct = settingKeyOf(assignment.name);
    const extra = direct === undefined && assignment.name.startsWith('extra-') ? settingKeyOf(assignment.name.slice('extra-'.length)) : undefined;
    const key = direct ?? extra;
    if (key === undefined) {
      other.set(assignment.name, { value: assignment.value, origins: [origin] });
      continue;
    }
    const { kind, name } = KNOWN_SETTINGS[key];
    const append = extra !== undefined;
    if (append && !isAppendable(kind)) {
      warnings.push(`${describePlace(assignment.place)}: unknown setting '${assignment.name}' ignored, as Nix ignores it ('${name}' takes one value, so it has no extra- form)`);
      continue;
    }
    const previous = settings[key];
    const parsed = parseSettingValue(kind, assignment.value, append, previous.value, machine.cpus);
    if (!parsed.ok) {
      throw new NixConfError(`${describePlace(assignment.place)}: setting '${assignment.name}' has invalid value '${assignment.value}' (${parsed.reason})`);
    }
    settings[key] = { value: parsed.value, origins: append ? [...previous.origins, origin] : [origin] };
  }
  return { settings: settings as NixSettings, other, locations, filesRead: [...new Set(filesRead)], warnings };
}

/** The config with one setting replaced by a command-line option's value. */
export function overrideSetting<K extends SettingKey>(config: NixConfig, key: K, value: SettingValues[K], flag: string): NixConfig {
  return { ...config, settings: { ...config.settings, [key]: { value, origins: [{ kind: 'flag', flag }] } } };
}

/** "default", "/etc/nix/nix.conf:3", "NIX_CONFIG line 1 (extra-substituters)", joined with " + " for appends. */
export function describeOrigins(origins: readonly SettingOrigin[]): string {
  return origins
    .map((origin) => {
      switch (origin.kind) {
        case 'default':
          return origin.detail !== undefined ? `default (${origin.detail})` : 'default';
        case 'flag':
          return origin.flag;
        default: {
          const written = settingKeyOf(origin.as) !== undefined && KNOWN_SETTINGS[settingKeyOf(origin.as)!].name === origin.as;
          return written ? describePlace(origin) : `${describePlace(origin)} (${origin.as})`;
        }
      }
    })
    .join(' + ');
}
