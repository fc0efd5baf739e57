import { readdirSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { SshConfigError } from './errors.js';
import { readIfExists } from './readIfExists.js';
import { parseSshConfig, type IncludeLoader, type ParsedSshConfig } from './sshConfig.js';
import { wildcardMatches } from './sshPatterns.js';
import { expandHome } from './sshTokens.js';

export interface SshConfigFileOptions {
  /** `--ssh-config FILE` (ssh -F): the only file read when given. */
  sshConfigFile?: string;
  homeDir: string;
  /** Defaults to /etc/ssh/ssh_config. */
  systemConfigFile?: string;
}

export interface SshConfigFiles {
  /** User file first, then the system file, as OpenSSH reads them. */
  configs: ParsedSshConfig[];
  include: IncludeLoader;
}

/** The ssh_config files OpenSSH would read, parsed, and a reader for the files their Include lines name. */
export function loadSshConfigFiles(options: SshConfigFileOptions): SshConfigFiles {
  const userDir = join(options.homeDir, '.ssh');
  const cache = new Map<string, ParsedSshConfig | undefined>();
  const load = (path: string, includeBase: string): ParsedSshConfig | undefined => {
    if (!cache.has(path)) {
      const text = read(path);
      cache.set(path, text === undefined ? undefined : parseSshConfig(path, text, includeBase));
    }
    return cache.get(path);
  };
  const include: IncludeLoader = (pattern, from) => {
    const absolute = isAbsolute(pattern) || pattern.startsWith('~') ? expandHome(pattern, options.homeDir) : join(from.includeBase, pattern);
    return globFiles(absolute).flatMap((file) => load(file, from.includeBase) ?? []);
  };

  if (options.sshConfigFile !== undefined) {
    const config = load(options.sshConfigFile, userDir);
    if (!config) throw new SshConfigError(`ssh_config file ${options.sshConfigFile} (--ssh-config) does not exist`);
    return { configs: [config], include };
  }
  const systemFile = options.systemConfigFile ?? '/etc/ssh/ssh_config';
  const configs = [load(join(userDir, 'config'), userDir), load(systemFile, dirname(systemFile))];
  return { configs: configs.filter((c): c is ParsedSshConfig => c !== undefined), include };
}

function read(path: string): string | undefined {
  try {
    return readIfExists(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new SshConfigError(`cannot read ssh_config file ${path} (${reason})`, { cause: error });
  }
}

/** glob(3) as Include uses it: wildcards in any path component, sorted; no match gives nothing. */
function globFiles(pattern: string): string[] {
  const parts = pattern.split('/');
  let paths = [parts[0] === '' ? '/' : parts[0]!];
  for (const part of parts.slice(1)) {
    if (part === '') continue;
    paths = paths.flatMap((dir) => {
      if (!/[*?]/.test(part)) return [join(dir, part)];
      return listDir(dir)
        .filter((name) => !name.startsWith('.') && wildcardMatches(part, name, { ignoreCase: false }))
        .sort()
        .map((name) => join(dir, name));
    });
  }
  return paths;
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
