import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import { KNOWN_SETTINGS, parseSettingValue, settingKeyOf } from '../config/nixSettings/knownSettings.js';
import { overrideSetting, readNixConfig, type NixConfig } from '../config/nixSettings/nixConfig.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { splitTwoWords } from './twoWordOptions.js';

/** `--substituters`, `--option NAME VALUE`, `--no-substitute`: plan and build accept them, as nix-build does. */
export interface SubstitutionOptions {
  substituters?: string;
  /** `NAME=VALUE` pairs (main joins Nix's `--option NAME VALUE` into this form: cli/twoWordOptions.ts). */
  option?: string[];
  /** False with --no-substitute. */
  substitute?: boolean;
}

/** What decides substitution for a run: Nix's settings with the command line applied. */
export interface SubstitutionSettings {
  substitute: boolean;
  substituters: string[];
  trustedPublicKeys: string[];
  requireSigs: boolean;
  maxSubstitutionJobs: number;
  /** Seconds; 0 = Nix's "no limit", which offload replaces by its short default for narinfo queries. */
  connectTimeout: number;
  /** Settings from the command line, passed on to the local Nix that fetches (`--option NAME VALUE`). */
  nixOptions: Array<[string, string]>;
}

/** Nix's default max-substitution-jobs (Nix 2.8 does not know the setting). */
export const DEFAULT_MAX_SUBSTITUTION_JOBS = 16;

export function addSubstitutionOptions(cmd: Command): Command {
  return cmd
    .option('--substituters <urls>', "binary caches to use instead of nix.conf's (space-separated, as Nix's --substituters)")
    .option('--option <name=value>', "a Nix setting for this run (also `--option NAME VALUE`, as Nix takes it): substituters, trusted-public-keys, max-substitution-jobs, …", collect, [])
    .option('--no-substitute', 'ask no binary cache: build whatever is not valid here or on a builder');
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * The run's substitution settings: the user's Nix settings as Nix reads them
 * (config/nixSettings: nix.conf, includes, NIX_CONFIG), then the command line
 * on top, each `--option` parsed exactly as nix.conf would parse it.
 */
export async function substitutionSettings(opts: SubstitutionOptions, env: NodeJS.ProcessEnv = process.env): Promise<SubstitutionSettings> {
  const pairs = (opts.option ?? []).map(splitTwoWords('--option', 'VALUE'));
  if (opts.substituters !== undefined) pairs.push(['substituters', opts.substituters]);
  let nix = await readNixConfig({ env });
  for (const [name, value] of pairs) nix = applyOption(nix, name, value);
  const s = nix.settings;
  const jobs = s.maxSubstitutionJobs.value;
  return {
    substitute: s.substitute.value && opts.substitute !== false,
    substituters: s.substituters.value,
    trustedPublicKeys: s.trustedPublicKeys.value,
    requireSigs: s.requireSigs.value,
    maxSubstitutionJobs: jobs > 0 ? jobs : DEFAULT_MAX_SUBSTITUTION_JOBS,
    connectTimeout: s.connectTimeout.value,
    nixOptions: pairs,
  };
}

/** A known setting (or its `extra-` form) replaces what nix.conf said; others only go on to the fetching Nix. */
function applyOption(nix: NixConfig, name: string, value: string): NixConfig {
  const append = name.startsWith('extra-');
  const key = settingKeyOf(append ? name.slice('extra-'.length) : name);
  if (key === undefined) return nix;
  const kind = KNOWN_SETTINGS[key].kind;
  const parsed = parseSettingValue(kind, value, append, nix.settings[key].value, availableParallelism());
  if (!parsed.ok) throw new OffloadError(`--option ${name} ${JSON.stringify(value)}: ${parsed.reason}`, ExitCode.badInput);
  return overrideSetting(nix, key, parsed.value as never, `--option ${name}`);
}
