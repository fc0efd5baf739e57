import { readdirSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { SshConfigError } from './errors.js';
import { readIfExists } from './readIfExists.js';
import { expandHome, wildcardMatches, type SshConfigSource } from './sshConfig.js';

export interface SshConfigFileOptions {
  /** `--ssh-config FILE` (ssh -F): the only file read when given. */
  sshConfigFile?: string;
  homeDir: string;
  /** Defaults to /etc/ssh/ssh_config. */
  systemConfigFile?: string;
}

/** OpenSSH's limit on nested Include. */
const MAX_INCLUDE_DEPTH = 16;

/** The ssh_config files OpenSSH would read, user file first, with Include expanded. */
export function readSshConfigSources(options: SshConfigFileOptions): SshConfigSource[] {
  const userDir = join(options.homeDir, '.ssh');
  if (options.sshConfigFile !== undefined) {
    const text = read(options.sshConfigFile);
    if (text === undefined) throw new SshConfigError(`ssh_config file ${options.sshConfigFile} (--ssh-config) does not exist`);
    return [{ path: options.sshConfigFile, text: expandIncludes(text, options.sshConfigFile, userDir, options.homeDir, 0) }];
  }
  const systemFile = options.systemConfigFile ?? '/etc/ssh/ssh_config';
  const candidates = [
    { path: join(userDir, 'config'), base: userDir },
    { path: systemFile, base: dirname(systemFile) },
  ];
  return candidates.flatMap(({ path, base }) => {
    const text = read(path);
    return text === undefined ? [] : [{ path, text: expandIncludes(text, path, base, options.homeDir, 0) }];
  });
}

function read(path: string): string | undefined {
  try {
    return readIfExists(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new SshConfigError(`cannot read ssh_config file ${path} (${reason})`, { cause: error });
  }
}

/**
 * Splices included files in place. OpenSSH restores the enclosing Host/Match
 * state after an Include, so the enclosing section line is repeated after the
 * included text ("Host *" at top level, where every host is active).
 */
function expandIncludes(text: string, path: string, base: string, homeDir: string, depth: number): string {
  if (depth > MAX_INCLUDE_DEPTH) throw new SshConfigError(`${path}: Include nested more than ${MAX_INCLUDE_DEPTH} deep`);
  let section = 'Host *';
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const [keyword = '', ...args] = line.trim().replace(/^([^\s=]+)\s*=\s*/, '$1 ').split(/\s+/);
    if (/^(host|match)$/i.test(keyword)) section = line.trim();
    if (!/^include$/i.test(keyword)) {
      out.push(line);
      continue;
    }
    for (const pattern of args.filter((arg) => arg !== '' && !arg.startsWith('#')).map(unquote)) {
      const absolute = isAbsolute(pattern) || pattern.startsWith('~') ? expandHome(pattern, homeDir) : join(base, pattern);
      for (const file of globFiles(absolute)) {
        const included = read(file);
        if (included !== undefined) out.push(expandIncludes(included, file, base, homeDir, depth + 1), section);
      }
    }
  }
  return out.join('\n');
}

function unquote(word: string): string {
  return word.replace(/^"(.*)"$/, '$1');
}

/** glob(3) as Include uses it: wildcards in any path component, sorted, no match → nothing. */
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
