import { hostname, homedir, userInfo } from 'node:os';
import { extname, join } from 'node:path';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { HostSelectionError, MachinesFileError } from './errors.js';
import type { LocalSettings, Machine, MachinesConfig, SshEndpoint } from './machine.js';
import type { MachineSpec } from './machineSpec.js';
import { parseMachinesJson, type MachinesFile } from './machinesJson.js';
import { parseNixMachines } from './nixMachines.js';
import type { MachineDefaults } from './nixSettings/knownSettings.js';
import { nixSystemOf } from './nixSettings/machineDefaults.js';
import { describeOrigins, readNixConfig, type NixConfig, type Sourced } from './nixSettings/nixConfig.js';
import { readIfExists } from './readIfExists.js';
import { parseNixSshOpts } from './nixSshOpts.js';
import type { SshLocalContext } from './sshConfig.js';
import { loadSshConfigFiles } from './sshConfigFiles.js';
import { resolveSshEndpoint, unhonouredWarning, type ResolvedEndpoint } from './sshEndpoints.js';

export interface LoadMachinesOptions {
  /** `--machines FILE`: offload JSON or Nix machines format. */
  machinesFile?: string;
  /** `--builders STRING`: Nix format. */
  builders?: string;
  env?: NodeJS.ProcessEnv;
  homeDir?: string;
  /** `--ssh-config FILE`: read instead of ~/.ssh/config and /etc/ssh/ssh_config. */
  sshConfigFile?: string;
  /** `--max-jobs`: local build slots; wins over the file and nix.conf. */
  maxJobs?: number;
  buildersUseSubstitutes?: boolean;
  /** `--max-silent-time`: wins over Nix's max-silent-time. */
  maxSilentTime?: number;
  /** `--timeout`: wins over Nix's timeout. */
  buildTimeout?: number;
  hosts?: string[];
  excludeHosts?: string[];
  /** What Nix defaults to on this machine (system, extra-platforms, …); by default the installed Nix is asked. */
  nixMachineDefaults?: MachineDefaults;
  /** Where Nix's machine defaults are kept between runs (see machineDefaultsCache.ts). */
  machineDefaultsCache?: string;
  /** Defaults to /etc/ssh/ssh_config. */
  systemSshConfigFile?: string;
  /** Base of relative @file includes; defaults to process.cwd(). */
  cwd?: string;
}

/** What one source of machines says, whatever its format. */
interface Loaded {
  source: string;
  machines: MachineSpec[];
  /** Where each machine was written, in the same order. */
  origins: string[];
  settings: Omit<MachinesFile, 'machines'>;
  warnings: string[];
}

/**
 * Finds the machines (--machines, --builders, $OFFLOAD_MACHINES,
 * ~/.config/offload/machines.json, else Nix's `builders` setting: the first
 * that is given or exists), selects hosts and resolves each through
 * ssh_config. The local machine's settings come from the flags, then the
 * offload file, then Nix's settings (nix.conf, user files, NIX_CONFIG).
 * Reads configuration files only: no network, no private keys.
 *
 * Machines from anywhere but Nix's `builders` setting are read while Nix is
 * asked for its configuration (`nix show-config`, the slow part), and
 * `onMachines` hears them at once; their errors still come after any error
 * of Nix's configuration, as when one was read after the other.
 */
export async function loadMachinesConfig(options: LoadMachinesOptions, onMachines?: (machines: readonly Machine[]) => void): Promise<MachinesConfig> {
  const env = options.env ?? process.env;
  const homeDir = options.homeDir ?? env.HOME ?? homedir();
  const reading = readNixConfig({
    env,
    homeDir,
    ...(options.nixMachineDefaults !== undefined && { machineDefaults: options.nixMachineDefaults }),
    ...(options.machineDefaultsCache !== undefined && { machineDefaultsCache: options.machineDefaultsCache }),
  });
  reading.catch(() => undefined);
  const given = attempt(() => {
    const loaded = givenMachines(options, env, homeDir);
    return loaded && { loaded, resolved: selectAndResolve(loaded, options, env, homeDir) };
  });
  if (given.ok && given.value) onMachines?.(given.value.resolved.machines.map((m) => withLocalSystem(m, undefined)));
  const nix = await reading;
  if (!given.ok) throw given.error;
  let found = given.value;
  if (found === undefined) {
    const loaded = nixSettingMachines(options, homeDir, nix, env);
    found = { loaded, resolved: selectAndResolve(loaded, options, env, homeDir) };
    onMachines?.(found.resolved.machines);
  }
  const { loaded, resolved } = found;
  const warnings = [...new Set([...nix.warnings, ...loaded.warnings, ...resolved.warnings])];
  return {
    source: loaded.source,
    machines: resolved.machines.map((m) => withLocalSystem(m, nix.settings.system.value)),
    local: localSettings(loaded, options, nix),
    ...(loaded.settings.state !== undefined && { state: { url: loaded.settings.state, file: loaded.source } }),
    ...(warnings.length > 0 && { warnings }),
  };
}

export { nixSystemOf };

/**
 * Stands for the local system in a Nix-format machine without a systems
 * column until Nix has said what it is; it never passes LIST_ITEM_PATTERN,
 * so no machine can name it.
 */
const LOCAL_SYSTEM = '<local system>';

/** The machine with the local system filled in where its line named none (undefined: left out, for reaching it only). */
function withLocalSystem(machine: Machine, system: string | undefined): Machine {
  if (!machine.systems.includes(LOCAL_SYSTEM)) return machine;
  return { ...machine, systems: machine.systems.flatMap((s) => (s !== LOCAL_SYSTEM ? [s] : system === undefined ? [] : [system])) };
}

type Attempt<T> = { ok: true; value: T } | { ok: false; error: unknown };

function attempt<T>(body: () => T): Attempt<T> {
  try {
    return { ok: true, value: body() };
  } catch (error) {
    return { ok: false, error };
  }
}

function selectAndResolve(loaded: Loaded, options: LoadMachinesOptions, env: NodeJS.ProcessEnv, homeDir: string): { machines: Machine[]; warnings: string[] } {
  const selected = selectHosts(loaded.machines, options, loaded.source);
  const origins = new Map(loaded.machines.map((m, index) => [m.hostName, loaded.origins[index]!]));
  return resolveAll(selected, options, env, homeDir, origins);
}

function nixFormat(text: string, source: string, sourceIsFile: boolean, options: LoadMachinesOptions, localSystem: string): Loaded {
  const parsed = parseNixMachines(text, {
    source,
    sourceIsFile,
    // Nix gives a machine without a systems column its own system.
    localSystem,
    cwd: options.cwd ?? process.cwd(),
    readFile: readIfExists,
  });
  return { source, machines: parsed.machines, origins: parsed.origins, settings: {}, warnings: parsed.warnings };
}

/** The machines given without Nix's configuration (--machines, --builders, $OFFLOAD_MACHINES, the user's file); undefined: none is. */
function givenMachines(options: LoadMachinesOptions, env: NodeJS.ProcessEnv, homeDir: string): Loaded | undefined {
  const anyFormat = (path: string, via: string): Loaded => {
    const text = readMachinesFile(path, via);
    if (text === undefined) throw new MachinesFileError([`machines file ${path} (${via}) does not exist`]);
    return looksLikeJson(path, text) ? json(text, path) : nixFormat(text, path, true, options, LOCAL_SYSTEM);
  };

  if (options.machinesFile !== undefined && options.builders !== undefined) {
    throw new OffloadError('give either --machines or --builders, not both', ExitCode.badInput);
  }
  if (options.machinesFile !== undefined) return anyFormat(options.machinesFile, '--machines');
  if (options.builders !== undefined) return nixFormat(options.builders, '--builders', false, options, LOCAL_SYSTEM);
  if (env.OFFLOAD_MACHINES) return anyFormat(env.OFFLOAD_MACHINES, '$OFFLOAD_MACHINES');

  const userFile = userMachinesFile(env, homeDir);
  const userText = readMachinesFile(userFile, 'user configuration');
  return userText === undefined ? undefined : json(userText, userFile);
}

function userMachinesFile(env: NodeJS.ProcessEnv, homeDir: string): string {
  return join(env.XDG_CONFIG_HOME || join(homeDir, '.config'), 'offload', 'machines.json');
}

function nixSettingMachines(options: LoadMachinesOptions, homeDir: string, nixConfig: NixConfig, env: NodeJS.ProcessEnv): Loaded {
  const builders = nixConfig.settings.builders;
  const setting = `Nix's builders setting (${describeOrigins(builders.origins)})`;
  const fromNix = nixFormat(builders.value, setting, false, options, nixConfig.settings.system.value);
  if (fromNix.machines.length > 0) return { ...fromNix, source: `${setting}: ${builders.value}` };
  const what = builders.value.trim() === '' ? 'is empty' : `${JSON.stringify(builders.value)} names no machine`;
  return {
    source: `no machines configured (no --machines, --builders or $OFFLOAD_MACHINES; no ${userMachinesFile(env, homeDir)}; ${setting} ${what}): building locally only`,
    machines: [],
    origins: [],
    settings: {},
    // The default @/etc/nix/machines is usually missing; Nix says nothing about it either.
    warnings: builders.origins[0]?.kind === 'default' ? [] : fromNix.warnings,
  };
}

function json(text: string, path: string): Loaded {
  const { machines, ...settings } = parseMachinesJson(text, path);
  return { source: path, machines, origins: machines.map((_, index) => `${path} machines[${index}]`), settings, warnings: [] };
}

function readMachinesFile(path: string, via: string): string | undefined {
  try {
    return readIfExists(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new MachinesFileError([`cannot read machines file ${path} (${via}): ${reason}`], { cause: error });
  }
}

/** A Nix machines line never starts with "{", and rarely parses as JSON. */
function looksLikeJson(path: string, text: string): boolean {
  if (extname(path).toLowerCase() === '.json' || text.trimStart().startsWith('{')) return true;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function selectHosts(machines: MachineSpec[], options: LoadMachinesOptions, source: string): MachineSpec[] {
  const known = machines.map((m) => m.hostName);
  const check = (flag: string, names: string[]) => {
    const unknown = names.filter((name) => !known.includes(name));
    if (unknown.length > 0) {
      const list = known.length > 0 ? known.join(', ') : 'none';
      throw new HostSelectionError(
        `${flag}: no machine named ${unknown.map((n) => `"${n}"`).join(', ')} in ${source} (known: ${list})`,
      );
    }
  };
  let selected = machines;
  if (options.hosts !== undefined) {
    check('--hosts', options.hosts);
    selected = selected.filter((m) => options.hosts!.includes(m.hostName));
  }
  if (options.excludeHosts !== undefined) {
    check('--exclude-hosts', options.excludeHosts);
    selected = selected.filter((m) => !options.excludeHosts!.includes(m.hostName));
  }
  return selected;
}

function resolveAll(
  specs: MachineSpec[],
  options: LoadMachinesOptions,
  env: NodeJS.ProcessEnv,
  homeDir: string,
  origins: ReadonlyMap<string, string>,
): { machines: Machine[]; warnings: string[] } {
  if (specs.length === 0) return { machines: [], warnings: [] };
  // Nix adds NIX_SSHOPTS to every ssh it runs for a builder; --ssh-config (offload's own flag) wins over its -F.
  const sshOpts = parseNixSshOpts(env.NIX_SSHOPTS);
  const sshConfigFile = options.sshConfigFile ?? sshOpts.configFile;
  const { configs, include } = loadSshConfigFiles({
    homeDir,
    ...(sshConfigFile !== undefined && { sshConfigFile }),
    ...(options.systemSshConfigFile !== undefined && { systemConfigFile: options.systemSshConfigFile }),
  });
  const context = { configs, include, local: localContext(env, homeDir) };
  const warnings: string[] = [];
  if (sshOpts.ignored.length > 0) warnings.push(`NIX_SSHOPTS: offload makes its own SSH connections and does not use ${sshOpts.ignored.join(', ')}`);
  if (options.sshConfigFile !== undefined && sshOpts.configFile !== undefined && sshOpts.configFile !== options.sshConfigFile) {
    warnings.push(`NIX_SSHOPTS: -F ${sshOpts.configFile} is not read: --ssh-config ${options.sshConfigFile} was given`);
  }
  const unhonoured: ResolvedEndpoint['unhonoured'] = [];
  const machines = specs.map((spec) => {
    const given = { ...(spec.sshUser !== undefined && { user: spec.sshUser }), ...(spec.port !== undefined && { port: spec.port }), ...(spec.sshKey !== undefined && { sshKey: spec.sshKey }) };
    const resolved = resolveSshEndpoint(spec.hostName, context, given, sshOpts.options);
    warnings.push(...resolved.warnings);
    unhonoured.push(...resolved.unhonoured);
    return toMachine(spec, resolved.endpoint, origins.get(spec.hostName));
  });
  const unhonouredLine = unhonouredWarning(unhonoured);
  if (unhonouredLine !== undefined) warnings.push(unhonouredLine);
  return { machines, warnings };
}

function localContext(env: NodeJS.ProcessEnv, homeDir: string): SshLocalContext {
  return {
    homeDir,
    localUser: env.USER || env.LOGNAME || safeUserName(),
    localHostName: hostname(),
    uid: process.getuid?.() ?? 0,
  };
}

function safeUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return '';
  }
}

function toMachine(spec: MachineSpec, endpoint: SshEndpoint, origin: string | undefined): Machine {
  const machine: Machine = {
    ...endpoint,
    systems: spec.systems,
    supportedFeatures: spec.supportedFeatures,
    mandatoryFeatures: spec.mandatoryFeatures,
    maxJobs: spec.maxJobs,
    speedFactor: spec.speedFactor,
  };
  if (spec.publicHostKey !== undefined) machine.publicHostKey = spec.publicHostKey;
  if (origin !== undefined) machine.origin = origin;
  if (spec.pressure !== undefined) machine.pressure = spec.pressure;
  return machine;
}

/**
 * The local machine is a host like any other: it builds what Nix here would
 * build (its `system` and `extra-platforms`, its `system-features`), with
 * `max-jobs` slots. An offload machines file may say otherwise, and a flag
 * says last.
 */
function localSettings(loaded: Loaded, options: LoadMachinesOptions, nix: NixConfig): LocalSettings {
  const { settings } = loaded;
  const file = `${loaded.source}`;
  const nixSays = <T>(sourced: Sourced<T>) => ({ value: sourced.value, origin: describeOrigins(sourced.origins) });
  const pick = <T>(flag: [string, T | undefined], inFile: [string, T | undefined], fallback: { value: T; origin: string }) =>
    flag[1] !== undefined ? { value: flag[1], origin: flag[0] } : inFile[1] !== undefined ? { value: inFile[1], origin: `${file} (${inFile[0]})` } : fallback;
  const s = nix.settings;
  const nixSystems = { value: [s.system.value, ...s.extraPlatforms.value.filter((p) => p !== s.system.value)], origin: `system: ${describeOrigins(s.system.origins)}; extra-platforms: ${describeOrigins(s.extraPlatforms.origins)}` };
  const picked = {
    maxJobs: pick(['--max-jobs', options.maxJobs], ['maxJobs', settings.maxJobs], nixSays(s.maxJobs)),
    speedFactor: pick(['', undefined], ['local.speedFactor', settings.local?.speedFactor], { value: 1, origin: 'default' }),
    systems: pick(['', undefined], ['local.systems', settings.local?.systems], nixSystems),
    supportedFeatures: pick(['', undefined], ['local.supportedFeatures', settings.local?.supportedFeatures], nixSays(s.systemFeatures)),
    buildersUseSubstitutes: pick(['--builders-use-substitutes', options.buildersUseSubstitutes], ['buildersUseSubstitutes', settings.buildersUseSubstitutes], nixSays(s.buildersUseSubstitutes)),
    maxSilentTime: pick(['--max-silent-time', options.maxSilentTime], ['', undefined], nixSays(s.maxSilentTime)),
    buildTimeout: pick(['--timeout', options.buildTimeout], ['', undefined], nixSays(s.timeout)),
  };
  return {
    maxJobs: picked.maxJobs.value,
    speedFactor: picked.speedFactor.value,
    systems: picked.systems.value,
    supportedFeatures: picked.supportedFeatures.value,
    buildersUseSubstitutes: picked.buildersUseSubstitutes.value,
    // Nix reads these as signed numbers; a negative one means no limit there too.
    maxSilentTime: Math.max(0, picked.maxSilentTime.value),
    buildTimeout: Math.max(0, picked.buildTimeout.value),
    store: s.store.value,
    origins: {
      maxJobs: picked.maxJobs.origin,
      speedFactor: picked.speedFactor.origin,
      systems: picked.systems.origin,
      supportedFeatures: picked.supportedFeatures.origin,
      buildersUseSubstitutes: picked.buildersUseSubstitutes.origin,
      maxSilentTime: picked.maxSilentTime.origin,
      buildTimeout: picked.buildTimeout.origin,
    },
  };
}
