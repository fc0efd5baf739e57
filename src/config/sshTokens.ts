import { createHash } from 'node:crypto';
import { SshConfigError } from './errors.js';

// ssh's %-tokens and ~ in file names and commands.

/** The local side, for %d %u %i %l %L. */
export interface SshLocalContext {
  homeDir: string;
  localUser: string;
  /** Local host name with domain, for %l (and without, for %L). */
  localHostName: string;
  uid: number;
}

export function fileTokens(local: SshLocalContext, remote: { h: string; n: string; p: string; r: string }): Record<string, string> {
  const l = local.localHostName;
  return {
    '%': '%',
    d: local.homeDir,
    u: local.localUser,
    i: String(local.uid),
    l,
    L: l.split('.')[0] ?? l,
    C: createHash('sha1').update(`${l}${remote.h}${remote.p}${remote.r}`).digest('hex'),
    k: remote.n,
    ...remote,
  };
}

/** ssh's percent_expand: an unknown token is an error, not left alone. */
export function expandPercent(value: string, tokens: Record<string, string>, what: string): string {
  return value.replace(/%(.?)/g, (whole, token: string) => {
    const replacement = tokens[token];
    if (replacement === undefined) throw new SshConfigError(`${what}: unknown token "${whole}" in "${value}"`);
    return replacement;
  });
}

/** ssh expands "~" (its own home) before %-tokens in IdentityFile and UserKnownHostsFile. */
export function expandPath(value: string, tokens: Record<string, string>, homeDir: string, what: string): string {
  if (/^~[^/]/.test(value)) throw new SshConfigError(`${what}: "~user" paths are not supported ("${value}")`);
  const tilde = value === '~' ? homeDir : value.startsWith('~/') ? `${homeDir}${value.slice(1)}` : value;
  return expandPercent(tilde, tokens, what);
}

/** For a machines-file sshKey: ssh -i expands "~" the same way. */
export function expandHome(path: string, homeDir: string): string {
  return path === '~' ? homeDir : path.startsWith('~/') ? `${homeDir}${path.slice(1)}` : path;
}
