import SSHConfig, { LineType, type Line } from 'ssh-config';
import { SshConfigError } from './errors.js';
import { hostPatternsMatch, patternListMatches, wildcardMatches } from './sshPatterns.js';
import { parseJumpHosts, type JumpHost } from './sshJumpHosts.js';
import { sshOptionSupport } from './sshOptionSupport.js';
import { parseSshTime } from './sshTime.js';
import { expandPath, expandPercent, fileTokens, type SshLocalContext } from './sshTokens.js';

export type { SshLocalContext } from './sshTokens.js';

/**
 * Host alias resolution the way OpenSSH does it: files are read in order
 * (user file, then system file), the first value obtained for an option wins
 * (IdentityFile accumulates), Host lines match the alias with "*"/"?"
 * wildcards and "!" negation. The `ssh-config` package parses; evaluation is
 * done here because its compute() runs `Match exec` commands and nslookup for
 * CanonicalizeHostName, and treats "?" as "zero or one character".
 */
export interface ParsedSshConfig {
  /** Shown in errors. */
  path: string;
  lines: SSHConfig;
  /** Where relative Include paths point: ~/.ssh for user files, /etc/ssh for the system file. */
  includeBase: string;
}

/** Reads the files an Include names (glob, sorted); called only when the Include is reached. */
export type IncludeLoader = (pattern: string, from: ParsedSshConfig) => ParsedSshConfig[];

/** OpenSSH's limit on nested Include. */
const MAX_INCLUDE_DEPTH = 16;


/** What the destination (here: the machines file) says, as in `ssh user@host` or `ssh://host:port`; it wins over ssh_config. */
export interface SshGiven {
  user?: string;
  port?: number;
}

/**
 * One option from the command line (`-o Keyword=value`, `-p`, `-l`, `-i`,
 * `-J` in NIX_SSHOPTS, or a jump host's own user and port): applied before
 * any file, so it wins over ssh_config and over the destination, as in ssh.
 */
export interface SshOption {
  keyword: string;
  value: string;
  /** Where it was written, for messages ("NIX_SSHOPTS"). */
  from: string;
}

/** An option offload read but cannot act on. */
export interface UnhonouredSshOption {
  /** As written in the file. */
  keyword: string;
  /** Where it was obtained. */
  from: string;
  /** Why, when there is more to say than "not supported". */
  why?: string;
  /** Not an ssh_config keyword offload knows at all. */
  unknown?: true;
}

export interface SshHostSettings {
  /** HostName after %h expansion, or the alias itself. */
  hostName: string;
  port?: number;
  user?: string;
  /** IdentityFile values in order, with ~ and %-tokens expanded. */
  identityFiles: string[];
  /** UserKnownHostsFile values, expanded; absent when not configured. */
  userKnownHostsFiles?: string[];
  /** GlobalKnownHostsFile values, expanded; absent when not configured. */
  globalKnownHostsFiles?: string[];
  /** HostKeyAlias (the name host keys are looked up and recorded under). */
  hostKeyAlias?: string;
  /** StrictHostKeyChecking no/off/false/accept-new: a host key not yet known is accepted. */
  acceptUnknownHostKey: boolean;
  /** StrictHostKeyChecking, normalised; absent when not configured (ssh's default: ask, which offload treats as yes). */
  strictHostKeyChecking?: 'yes' | 'ask' | 'accept-new' | 'no';
  /** HashKnownHosts yes. */
  hashKnownHosts?: boolean;
  /** ProxyJump (first hop first); absent when none, or when ProxyCommand came first. */
  proxyJump?: JumpHost[];
  /** ProxyCommand with its %-tokens expanded; absent when none, or when ProxyJump came first. */
  proxyCommand?: string;
  /** ConnectTimeout, in seconds (absent: unset or 0). */
  connectTimeoutSeconds?: number;
  /** ServerAliveInterval, in seconds; 0 turns keep-alives off. */
  serverAliveIntervalSeconds?: number;
  /** ServerAliveCountMax. */
  serverAliveCountMax?: number;
  /** CertificateFile values, expanded (ssh2 cannot present them; see unhonoured). */
  certificateFiles?: string[];
  /** Options set for this host that offload cannot act on; absent when none. */
  unhonoured?: UnhonouredSshOption[];
  /** IdentitiesOnly yes: of the agent's keys only those an identity file names are offered. */
  identitiesOnly?: boolean;
  /** IdentityAgent, expanded: a socket path, or "none" (no agent). Absent: SSH_AUTH_SOCK. */
  identityAgent?: string;
  /** Compression yes: offer zlib first. Absent for no or unset. */
  compression?: true;
  /** Config that was skipped because offload does not evaluate it (Match exec, ...). */
  warnings: string[];
}

interface Obtained {
  value: string | string[];
  path: string;
  /** The keyword as written. */
  written: string;
}

export function parseSshConfig(path: string, text: string, includeBase: string): ParsedSshConfig {
  try {
    return { path, lines: SSHConfig.parse(text), includeBase };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new SshConfigError(`${path}: cannot parse ssh_config: ${reason}`, { cause: error });
  }
}

export function resolveSshHost(
  alias: string,
  configs: ParsedSshConfig[],
  local: SshLocalContext,
  given: SshGiven = {},
  include: IncludeLoader = () => [],
  commandLine: readonly SshOption[] = [],
): SshHostSettings {
  const state = new Evaluation(alias.toLowerCase(), local, include);
  // ssh's order: command-line options, then the destination's user@ and :port, then the files.
  for (const option of commandLine) state.set(option.keyword.toLowerCase(), option.value, option.from, option.keyword);
  if (given.user !== undefined) state.set('user', given.user, 'the machines file', 'User');
  if (given.port !== undefined) state.set('port', String(given.port), 'the machines file', 'Port');
  for (const config of configs) state.apply(config.lines, config, 0);
  return state.result(alias);
}

const STRICT_MODES = new Map<string, 'yes' | 'ask' | 'accept-new' | 'no'>([
  ['yes', 'yes'], ['true', 'yes'], ['ask', 'ask'],
  ['no', 'no'], ['false', 'no'], ['off', 'no'], ['accept-new', 'accept-new'],
]);

const ACCEPT_UNKNOWN = new Map([
  ['yes', false], ['true', false], ['ask', false],
  ['no', true], ['false', true], ['off', true], ['accept-new', true],
]);

/** Keywords whose every value counts, in order, rather than the first. */
const ACCUMULATING = new Set(['identityfile', 'certificatefile']);

class Evaluation {
  private readonly options = new Map<string, Obtained>();
  private readonly accumulated = new Map<string, Obtained[]>();
  private readonly warnings: string[] = [];

  constructor(
    private readonly host: string,
    private readonly local: SshLocalContext,
    private readonly include: IncludeLoader,
  ) {}

  /**
   * Sections are applied only when they match, so an Include inside a
   * non-matching Host block is never read, and the lines after an Include
   * stay in their enclosing section: both as in OpenSSH.
   */
  apply(lines: SSHConfig, config: ParsedSshConfig, depth: number): void {
    for (const line of lines) {
      if (line.type !== LineType.DIRECTIVE) continue;
      const keyword = line.param.toLowerCase();
      if (keyword === 'host') {
        if (hostPatternsMatch(words(line.value), this.host)) this.apply(sectionLines(line), config, depth);
      } else if (keyword === 'match') {
        if (this.matchApplies(line, config.path)) this.apply(sectionLines(line), config, depth);
      } else if (keyword === 'include') {
        if (depth >= MAX_INCLUDE_DEPTH) throw new SshConfigError(`${config.path}: Include nested more than ${MAX_INCLUDE_DEPTH} deep`);
        for (const pattern of words(line.value)) {
          for (const included of this.include(pattern, config)) this.apply(included.lines, included, depth + 1);
        }
      } else {
        this.set(keyword, line.value, config.path, line.param);
      }
    }
  }

  set(keyword: string, raw: unknown, path: string, written: string): void {
    // ProxyCommand goes to a shell as written; the parser took its quotes off.
    const value = keyword === 'proxycommand' && Array.isArray(raw) ? commandText(raw as { val: string; separator: string; quoted?: boolean }[]) : Array.isArray(raw) ? words(raw) : String(raw);
    if (ACCUMULATING.has(keyword)) {
      this.accumulated.set(keyword, [...(this.accumulated.get(keyword) ?? []), { value, path, written }]);
      return;
    }
    // ProxyJump and ProxyCommand compete: whichever comes first wins (ssh_config(5)).
    if ((keyword === 'proxyjump' || keyword === 'proxycommand') && (this.options.has('proxyjump') || this.options.has('proxycommand'))) return;
    if (!this.options.has(keyword)) this.options.set(keyword, { value, path, written });
  }

  private single(keyword: string): { value: string; path: string } | undefined {
    const obtained = this.options.get(keyword);
    if (!obtained) return undefined;
    return { value: Array.isArray(obtained.value) ? obtained.value.join(' ') : obtained.value, path: obtained.path };
  }

  /** The host name as OpenSSH knows it at this point: HostName if obtained, else the alias. */
  private currentHostName(): string {
    const hostName = this.single('hostname');
    return hostName ? expandPercent(hostName.value, { h: this.host }, `HostName in ${hostName.path}`) : this.host;
  }

  private currentUser(): string {
    return this.single('user')?.value ?? this.local.localUser;
  }

  private matchApplies(line: Line, path: string): boolean {
    const criteria = 'criteria' in line ? line.criteria : {};
    for (const [rawKey, rawValue] of Object.entries(criteria)) {
      const negated = rawKey.startsWith('!');
      const key = rawKey.replace(/^!/, '').toLowerCase();
      const patterns = (Array.isArray(rawValue) ? rawValue.map((v) => v.val).join(',') : rawValue).split(',');
      let matched: boolean;
      if (key === 'all') matched = true;
      else if (key === 'host') matched = patternListMatches(patterns, this.currentHostName().toLowerCase());
      else if (key === 'originalhost') matched = patternListMatches(patterns, this.host);
      else if (key === 'user') matched = patternListMatches(patterns, this.currentUser());
      else if (key === 'localuser') matched = patternListMatches(patterns, this.local.localUser);
      else {
        this.warnings.push(`${path}: "Match ${key}" is not evaluated by offload; that Match block was skipped`);
        return false;
      }
      if (matched === negated) return false;
    }
    return true;
  }

  result(alias: string): SshHostSettings {
    const hostName = this.currentHostName();
    const port = parsePort(this.single('port'), alias);
    const user = this.single('user')?.value;
    const remoteUser = user ?? this.local.localUser;
    const tokens = fileTokens(this.local, { h: hostName, n: alias, p: String(port ?? 22), r: remoteUser });
    const files = (keyword: string, name: string) =>
      (this.accumulated.get(keyword) ?? [])
        .flatMap(({ value, path }) => [value].flat().map((file) => ({ file, path })))
        .filter(({ file }) => file.toLowerCase() !== 'none')
        .map(({ file, path }) => expandPath(file, tokens, this.local.homeDir, `${name} in ${path}`));
    const identityFiles = files('identityfile', 'IdentityFile');
    const settings: SshHostSettings = {
      hostName,
      identityFiles,
      acceptUnknownHostKey: this.acceptUnknownHostKey(alias),
      warnings: this.warnings,
    };
    if (port !== undefined) settings.port = port;
    if (user !== undefined) settings.user = user;
    if (this.yesNo('compression', alias)) settings.compression = true;
    const identitiesOnly = this.yesNo('identitiesonly', alias);
    if (identitiesOnly !== undefined) settings.identitiesOnly = identitiesOnly;
    const agent = this.single('identityagent');
    if (agent && agent.value !== 'SSH_AUTH_SOCK') {
      settings.identityAgent = agent.value.toLowerCase() === 'none' ? 'none' : expandPath(agent.value.startsWith('$') ? (process.env[agent.value.slice(1)] ?? '') : agent.value, tokens, this.local.homeDir, `IdentityAgent in ${agent.path}`);
    }
    for (const [keyword, field, name] of [
      ['userknownhostsfile', 'userKnownHostsFiles', 'UserKnownHostsFile'],
      ['globalknownhostsfile', 'globalKnownHostsFiles', 'GlobalKnownHostsFile'],
    ] as const) {
      const files = this.options.get(keyword);
      if (!files) continue;
      settings[field] = [files.value]
        .flat()
        .flatMap((value) => value.split(/\s+/))
        .filter((file) => file !== '' && file.toLowerCase() !== 'none')
        .map((file) => expandPath(file, tokens, this.local.homeDir, `${name} in ${files.path}`));
    }
    const keyAlias = this.single('hostkeyalias');
    if (keyAlias) settings.hostKeyAlias = keyAlias.value;
    const strict = this.single('stricthostkeychecking');
    if (strict) settings.strictHostKeyChecking = STRICT_MODES.get(strict.value.toLowerCase())!;
    const hash = this.yesNo('hashknownhosts', alias);
    if (hash !== undefined) settings.hashKnownHosts = hash;
    this.proxy(settings, alias, { '%': '%', h: hostName, p: String(port ?? 22), r: remoteUser, n: alias });
    const connectTimeout = this.seconds('connecttimeout', alias, { none: true });
    if (connectTimeout !== undefined && connectTimeout > 0) settings.connectTimeoutSeconds = connectTimeout;
    const aliveInterval = this.seconds('serveraliveinterval', alias);
    if (aliveInterval !== undefined) settings.serverAliveIntervalSeconds = aliveInterval;
    const aliveCount = this.single('serveralivecountmax');
    if (aliveCount) {
      if (!/^\d+$/.test(aliveCount.value)) throw new SshConfigError(`${aliveCount.path}: ServerAliveCountMax "${aliveCount.value}" for host ${alias} is not a whole number`);
      settings.serverAliveCountMax = Number(aliveCount.value);
    }
    const certificates = files('certificatefile', 'CertificateFile');
    if (certificates.length > 0) settings.certificateFiles = certificates;
    const unhonoured = this.unhonoured();
    if (unhonoured.length > 0) settings.unhonoured = unhonoured;
    return settings;
  }

  /** ProxyJump or ProxyCommand, whichever was obtained first; `none` for either means a direct connection. */
  private proxy(settings: SshHostSettings, alias: string, tokens: Record<string, string>): void {
    const jump = this.single('proxyjump');
    if (jump && jump.value.toLowerCase() !== 'none') settings.proxyJump = parseJumpHosts(jump.value, `ProxyJump in ${jump.path} for host ${alias}`);
    const command = this.single('proxycommand');
    // ssh_config(5): ProxyCommand accepts the tokens %%, %h, %n, %p and %r.
    if (command && command.value.toLowerCase() !== 'none') settings.proxyCommand = expandPercent(command.value, tokens, `ProxyCommand in ${command.path}`);
  }

  private seconds(keyword: string, alias: string, { none = false } = {}): number | undefined {
    const obtained = this.options.get(keyword);
    if (!obtained) return undefined;
    const text = [obtained.value].flat().join(' ');
    if (none && text.toLowerCase() === 'none') return undefined;
    const seconds = parseSshTime(text);
    if (seconds === undefined) throw new SshConfigError(`${obtained.path}: ${obtained.written} "${text}" for host ${alias} is not a time (seconds, or e.g. 1m30s)`);
    return seconds;
  }

  /** Every option obtained for this host that offload does not act on, with IgnoreUnknown applied to unknown ones. */
  private unhonoured(): UnhonouredSshOption[] {
    const ignoreUnknown = (this.single('ignoreunknown')?.value ?? '').split(',').filter((p) => p !== '');
    const found: UnhonouredSshOption[] = [];
    const obtained = [...this.options.entries(), ...[...this.accumulated.entries()].flatMap(([k, all]) => all.slice(0, 1).map((o) => [k, o] as const))];
    for (const [keyword, option] of obtained) {
      const support = sshOptionSupport(keyword, [option.value].flat().join(' '));
      if (support.kind === 'unknown') {
        if (!ignoreUnknown.some((pattern) => wildcardMatches(pattern, keyword))) found.push({ keyword: option.written, from: option.path, unknown: true });
      } else if (support.kind === 'not honoured') {
        found.push({ keyword: option.written, from: option.path, ...(support.why !== undefined && { why: support.why }) });
      }
    }
    if (this.accumulated.has('certificatefile')) {
      const first = this.accumulated.get('certificatefile')![0]!;
      found.push({ keyword: first.written, from: first.path, why: 'ssh2 cannot log in with an OpenSSH certificate; the plain keys are offered' });
    }
    return found;
  }

  private yesNo(keyword: string, alias: string): boolean | undefined {
    const obtained = this.single(keyword);
    if (!obtained) return undefined;
    const value = obtained.value.toLowerCase();
    if (value === 'yes' || value === 'true') return true;
    if (value === 'no' || value === 'false') return false;
    throw new SshConfigError(`${obtained.path}: ${obtained.value} is not yes or no (${keyword} for host ${alias})`);
  }

  private acceptUnknownHostKey(alias: string): boolean {
    const strict = this.single('stricthostkeychecking');
    if (!strict) return false;
    const accept = ACCEPT_UNKNOWN.get(strict.value.toLowerCase());
    if (accept === undefined) {
      throw new SshConfigError(
        `${strict.path}: StrictHostKeyChecking "${strict.value}" for host ${alias} is not one of yes, no, ask, accept-new, off`,
      );
    }
    return accept;
  }
}

/** The words of a ProxyCommand line back as one shell command, quoted where they were. */
function commandText(value: { val: string; separator: string; quoted?: boolean }[]): string {
  return value.map((word, index) => `${index > 0 ? word.separator : ''}${word.quoted ? `"${word.val}"` : word.val}`).join('');
}

function sectionLines(line: Line): SSHConfig {
  return 'config' in line ? line.config : new SSHConfig();
}

function words(value: unknown): string[] {
  if (Array.isArray(value)) return value.map((v: { val: string }) => v.val);
  return String(value).split(/\s+/).filter((word) => word !== '');
}

function parsePort(obtained: { value: string; path: string } | undefined, alias: string): number | undefined {
  if (!obtained) return undefined;
  const port = /^\d+$/.test(obtained.value) ? Number(obtained.value) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new SshConfigError(`${obtained.path}: Port "${obtained.value}" for host ${alias} is not a number from 1 to 65535`);
  }
  return port;
}
