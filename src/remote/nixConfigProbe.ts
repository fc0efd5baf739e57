import { jsonDepthProblem } from '../config/jsonSyntax.js';

/**
 * What a builder's Nix says about itself, parsed from the output of fixed
 * probe commands. Pure: the probe runs the commands, these read the text.
 */

/** The settings that decide what a builder can build. */
export interface BuilderNixConfig {
  /** Native system, e.g. `x86_64-linux`. */
  system: string;
  /** Other systems it builds (`extra-platforms`), e.g. `i686-linux` or emulated `aarch64-linux`. */
  extraPlatforms: string[];
  /** `system-features`: what `requiredSystemFeatures` it satisfies. */
  systemFeatures: string[];
}

export type NixConfigResult = { ok: true; config: BuilderNixConfig } | { ok: false; reason: string };

/** Asks for JSON; `--extra-experimental-features` because `nix` subcommands are experimental from Nix 2.4 on. */
export const SHOW_CONFIG_JSON_COMMAND = 'nix --extra-experimental-features nix-command show-config --json';
/** For a Nix that rejects the flag (2.3 knows neither it nor the experimental gate). */
export const SHOW_CONFIG_TEXT_COMMAND = 'nix show-config';
export const NIX_VERSION_COMMAND = 'nix-store --version';

/** `nix-store (Nix) 2.8.0` → `2.8.0`; also `nix-store (Lix, like Nix) 2.90.0`. */
export function parseNixVersion(output: string): string | undefined {
  const first = output.split('\n').find((line) => line.trim() !== '') ?? '';
  const match = /^nix-store\b.*?(\d+\.\d+(?:\.\d+)?(?:[-+.~][\w.+~-]*)?)\s*$/.exec(first.trim());
  return match?.[1];
}

const words = (text: string) => text.split(/\s+/).filter((w) => w !== '');

function fromSettings(get: (name: string) => string[] | undefined, what: string): NixConfigResult {
  const system = get('system')?.[0];
  if (system === undefined) return { ok: false, reason: `${what} has no "system" setting` };
  return {
    ok: true,
    config: { system, extraPlatforms: get('extra-platforms') ?? [], systemFeatures: get('system-features') ?? [] },
  };
}

/** `nix show-config --json`: `{ "<name>": { "value": … }, … }` (Nix ≥ 2.4) or `{ "<name>": … }` (Nix 2.3). */
export function parseShowConfigJson(text: string): NixConfigResult {
  const settings = showConfigSettings(text);
  return settings.ok ? fromSettings(settings.get, 'nix show-config --json') : settings;
}

/** Every setting in `nix show-config --json`'s output, as words; `get` is undefined for an unset or non-list one. */
export function showConfigSettings(text: string): { ok: true; get: (name: string) => string[] | undefined } | { ok: false; reason: string } {
  const tooDeep = jsonDepthProblem(text);
  if (tooDeep) return { ok: false, reason: `nix show-config --json printed JSON ${tooDeep.reason}` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `nix show-config --json printed no JSON (${(error as Error).message})` };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ok: false, reason: 'nix show-config --json printed no JSON object' };
  }
  const settings = parsed as Record<string, unknown>;
  const get = (name: string): string[] | undefined => {
    const entry = settings[name];
    const value = typeof entry === 'object' && entry !== null && !Array.isArray(entry) && 'value' in entry ? entry.value : entry;
    if (typeof value === 'string') return words(value);
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value;
    return undefined;
  };
  return { ok: true, get };
}

/** `nix show-config`: one `name = value` line per setting, list values space-separated. */
export function parseShowConfigText(text: string): NixConfigResult {
  const settings = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z0-9-]+)\s*=\s?(.*)$/.exec(line.trim());
    if (match) settings.set(match[1]!, words(match[2]!));
  }
  return fromSettings((name) => settings.get(name), 'nix show-config');
}
