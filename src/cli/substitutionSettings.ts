import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { OffloadError } from '../errors/offloadError.js';

const run = promisify(execFile);

/** `--substituters`, `--option NAME VALUE`, `--no-substitute`: plan and build accept them, as nix-build does. */
export interface SubstitutionOptions {
  substituters?: string;
  /** `NAME=VALUE` pairs (main turns Nix's `--option NAME VALUE` into this form). */
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

/** Nix's default; Nix 2.8 has no such setting and fetches 16 at a time inside one goal loop anyway. */
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

/** Nix's `--option NAME VALUE` (two words) becomes `--option NAME=VALUE` for commander. */
export function joinNixOptionArgs(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--option' && i + 2 < argv.length && !argv[i + 1]!.includes('=')) {
      out.push('--option', `${argv[i + 1]}=${argv[i + 2]}`);
      i += 2;
    } else out.push(arg);
  }
  return out;
}

/**
 * The run's substitution settings: what the installed Nix says (so nix.conf,
 * NIX_CONFIG and includes count exactly as for nix-build), then the command
 * line on top.
 */
export async function substitutionSettings(opts: SubstitutionOptions, env: NodeJS.ProcessEnv = process.env): Promise<SubstitutionSettings> {
  const pairs = (opts.option ?? []).map(splitOption);
  if (opts.substituters !== undefined) pairs.push(['substituters', opts.substituters]);
  const settings: SubstitutionSettings = { ...(await nixDefaults(env)), nixOptions: pairs };
  for (const [name, value] of pairs) applySetting(settings, name, value);
  if (opts.substitute === false) settings.substitute = false;
  return settings;
}

function splitOption(text: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new OffloadError(`--option ${JSON.stringify(text)}: expected NAME VALUE (or NAME=VALUE)`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

const words = (value: string) => value.split(/\s+/).filter((w) => w !== '');

function applySetting(s: SubstitutionSettings, name: string, value: string): void {
  const bool = () => {
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    throw new OffloadError(`--option ${name}: expected true or false, got ${JSON.stringify(value)}`);
  };
  const count = () => {
    if (!/^\d+$/.test(value)) throw new OffloadError(`--option ${name}: expected a whole number, got ${JSON.stringify(value)}`);
    return Number(value);
  };
  switch (name) {
    case 'substituters':
      s.substituters = words(value);
      break;
    case 'extra-substituters':
      s.substituters = [...s.substituters, ...words(value)];
      break;
    case 'trusted-public-keys':
      s.trustedPublicKeys = words(value);
      break;
    case 'extra-trusted-public-keys':
      s.trustedPublicKeys = [...s.trustedPublicKeys, ...words(value)];
      break;
    case 'require-sigs':
      s.requireSigs = bool();
      break;
    case 'substitute':
      s.substitute = bool();
      break;
    case 'max-substitution-jobs':
      s.maxSubstitutionJobs = Math.max(1, count());
      break;
    case 'connect-timeout':
      s.connectTimeout = count();
      break;
  }
}

/** Until offload reads nix.conf itself: the installed Nix's own view of its settings. */
async function nixDefaults(env: NodeJS.ProcessEnv): Promise<Omit<SubstitutionSettings, 'nixOptions'>> {
  let config: Record<string, { value: unknown }>;
  try {
    const { stdout } = await run('nix', ['--extra-experimental-features', 'nix-command', 'show-config', '--json'], { env, maxBuffer: 16 << 20 });
    config = JSON.parse(stdout) as Record<string, { value: unknown }>;
  } catch {
    // No Nix here (a plan from JSON on a laptop): nothing to substitute from.
    return { substitute: false, substituters: [], trustedPublicKeys: [], requireSigs: true, maxSubstitutionJobs: DEFAULT_MAX_SUBSTITUTION_JOBS, connectTimeout: 0 };
  }
  const list = (key: string) => (Array.isArray(config[key]?.value) ? (config[key]!.value as string[]) : []);
  const jobs = config['max-substitution-jobs']?.value;
  return {
    substitute: config['substitute']?.value !== false,
    substituters: [...list('substituters'), ...list('extra-substituters')],
    trustedPublicKeys: [...list('trusted-public-keys'), ...list('extra-trusted-public-keys')],
    requireSigs: config['require-sigs']?.value !== false,
    maxSubstitutionJobs: typeof jobs === 'number' && jobs > 0 ? jobs : DEFAULT_MAX_SUBSTITUTION_JOBS,
    connectTimeout: typeof config['connect-timeout']?.value === 'number' ? (config['connect-timeout'].value as number) : 0,
  };
}
