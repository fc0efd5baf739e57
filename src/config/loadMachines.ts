import { hostname, homedir, userInfo } from 'node:os';
import { extname, join } from 'node:path';
import { OffloadError } from '../errors/offloadError.js';
import { HostSelectionError, MachinesFileError } from './errors.js';
import type { LocalSettings, Machine, MachinesConfig } from './machine.js';
import type { MachineSpec } from './machineSpec.js';
import { parseMachinesJson, type MachinesFile } from './machinesJson.js';
import { parseNixMachines } from './nixMachines.js';
import { nixSystemOf } from './nixSettings/machineDefaults.js';
import { readIfExists } from './readIfExists.js';
import { expandHome, resolveSshHost, type SshLocalContext } from './sshConfig.js';
import { loadSshConfigFiles } from './sshConfigFiles.js';

export interface LoadMachinesOptions {
  /** `--machines FILE`: offload JSON or Nix machines format. */
  machinesFile?: string;
  /** `--builders STRING`: Nix format. */
  builders?: string;
  env?: NodeJS.ProcessEnv;
  homeDir?: string;
  /** `--ssh-config FILE`: read instead of ~/.ssh/config and /etc/ssh/ssh_config. */
  sshConfigFile?: string;
  /** `--max-jobs`: local build slots; wins over the file. */
  maxJobs?: number;
  buildersUseSubstitutes?: boolean;
  hosts?: string[];
  excludeHosts?: string[];
  /** Nix system of this machine; defaults to the one of this process. */
  localSystem?: string;
  /** Last place looked at; defaults to /etc/nix/machines. */
  nixMachinesFile?: string;
  /** Defaults to /etc/ssh/ssh_config. */
  systemSshConfigFile?: string;
  /** Base of relative @file includes; defaults to process.cwd(). */
  cwd?: string;
}

/** What one source of machines says, whatever its format. */
interface Loaded {
  source: string;
  machines: MachineSpec[];
  settings: Omit<MachinesFile, 'machines'>;
  warnings: string[];
}

/**
 * Finds the machines (--machines, --builders, $OFFLOAD_MACHINES,
 * ~/.config/offload/machines.json, /etc/nix/machines: the first that is
 * given or exists), selects hosts and resolves each through ssh_config.
 * Reads configuration files only: no network, no private keys.
 */
export async function loadMachinesConfig(options: LoadMachinesOptions): Promise<MachinesConfig> {
  const env = options.env ?? process.env;
  const homeDir = options.homeDir ?? env.HOME ?? homedir();
  const localSystem = options.localSystem ?? nixSystemOf(process.arch, process.platform);
  const loaded = findMachines(options, env, homeDir, localSystem);
  const selected = selectHosts(loaded.machines, options, loaded.source);
  const resolved = resolveAll(selected, options, env, homeDir);
  const warnings = [...new Set([...loaded.warnings, ...resolved.warnings])];
  return {
    source: loaded.source,
    machines: resolved.machines,
    local: localSettings(loaded.settings, options, localSystem),
    ...(warnings.length > 0 && { warnings }),
  };
}

export { nixSystemOf };

function findMachines(options: LoadMachinesOptions, env: NodeJS.ProcessEnv, homeDir: string, localSystem: string): Loaded {
  const nix = (text: string, source: string, sourceIsFile: boolean): Loaded => {
    const parsed = parseNixMachines(text, {
      source,
      sourceIsFile,
      localSystem,
      cwd: options.cwd ?? process.cwd(),
      readFile: readIfExists,
    });
    return { source, machines: parsed.machines, settings: {}, warnings: parsed.warnings };
  };
  const anyFormat = (path: string, via: string): Loaded => {
    const text = readMachinesFile(path, via);
    if (text === undefined) throw new MachinesFileError([`machines file ${path} (${via}) does not exist`]);
    return looksLikeJson(path, text) ? json(text, path) : nix(text, path, true);
  };

  if (options.machinesFile !== undefined && options.builders !== undefined) {
    throw new OffloadError('give either --machines or --builders, not both');
  }
  if (options.machinesFile !== undefined) return anyFormat(options.machinesFile, '--machines');
  if (options.builders !== undefined) return nix(options.builders, '--builders', false);
  if (env.OFFLOAD_MACHINES) return anyFormat(env.OFFLOAD_MACHINES, '$OFFLOAD_MACHINES');

  const userFile = join(env.XDG_CONFIG_HOME || join(homeDir, '.config'), 'offload', 'machines.json');
  const userText = readMachinesFile(userFile, 'user configuration');
  if (userText !== undefined) return json(userText, userFile);

  const nixFile = options.nixMachinesFile ?? '/etc/nix/machines';
  const nixText = readMachinesFile(nixFile, "Nix's machines file");
  if (nixText !== undefined) return nix(nixText, nixFile, true);

  return {
    source: `no machines configured (no --machines, --builders or $OFFLOAD_MACHINES; no ${userFile} or ${nixFile}): building locally only`,
    machines: [],
    settings: {},
    warnings: [],
  };
}

function json(text: string, path: string): Loaded {
  const { machines, ...settings } = parseMachinesJson(text, path);
  return { source: path, machines, settings, warnings: [] };
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
): { machines: Machine[]; warnings: string[] } {
  if (specs.length === 0) return { machines: [], warnings: [] };
  const { configs, include } = loadSshConfigFiles({
    homeDir,
    ...(options.sshConfigFile !== undefined && { sshConfigFile: options.sshConfigFile }),
    ...(options.systemSshConfigFile !== undefined && { systemConfigFile: options.systemSshConfigFile }),
  });
  const local = localContext(env, homeDir);
  const warnings: string[] = [];
  const machines = specs.map((spec) => {
    const ssh = resolveSshHost(spec.hostName, configs, local, { user: spec.sshUser, port: spec.port }, include);
    warnings.push(...ssh.warnings);
    return toMachine(spec, ssh, homeDir);
  });
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

function toMachine(spec: MachineSpec, ssh: ReturnType<typeof resolveSshHost>, homeDir: string): Machine {
  const identityFiles = [
    ...new Set([...(spec.sshKey !== undefined ? [expandHome(spec.sshKey, homeDir)] : []), ...ssh.identityFiles]),
  ];
  const machine: Machine = {
    hostName: spec.hostName,
    address: ssh.hostName,
    port: ssh.port ?? 22,
    systems: spec.systems,
    supportedFeatures: spec.supportedFeatures,
    mandatoryFeatures: spec.mandatoryFeatures,
    maxJobs: spec.maxJobs,
    speedFactor: spec.speedFactor,
    acceptUnknownHostKey: ssh.acceptUnknownHostKey,
  };
  if (ssh.user !== undefined) machine.sshUser = ssh.user;
  if (identityFiles.length > 0) {
    machine.sshKey = identityFiles[0]!;
    machine.identityFiles = identityFiles;
  }
  if (spec.publicHostKey !== undefined) machine.publicHostKey = spec.publicHostKey;
  if (ssh.userKnownHostsFiles !== undefined) machine.userKnownHostsFiles = ssh.userKnownHostsFiles;
  return machine;
}

function localSettings(settings: Omit<MachinesFile, 'machines'>, options: LoadMachinesOptions, localSystem: string): LocalSettings {
  return {
    // Nix's own default for max-jobs is 1.
    maxJobs: options.maxJobs ?? settings.maxJobs ?? 1,
    speedFactor: settings.local?.speedFactor ?? 1,
    systems: settings.local?.systems ?? [localSystem],
    supportedFeatures: settings.local?.supportedFeatures ?? [],
    buildersUseSubstitutes: options.buildersUseSubstitutes ?? settings.buildersUseSubstitutes ?? false,
  };
}
