import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * OpenSSH known_hosts files: `[marker] patterns keytype base64 [comment]`.
 * Patterns are comma-separated names with `*`/`?` wildcards and `!` negation,
 * `[host]:port` for non-standard ports, or one hashed name `|1|salt|hmac`
 * (HMAC-SHA1 of the name keyed with the salt, as `HashKnownHosts` writes).
 */
export interface KnownHostsEntry {
  marker?: '@revoked' | '@cert-authority';
  /** Raw pattern field; hashed names stay hashed. */
  patterns: string;
  keyType: string;
  blob: Buffer;
  /** `file:line` for messages. */
  source: string;
}

export interface KnownHostKeys {
  /** Keys listed for the host (no markers). */
  keys: KnownHostsEntry[];
  /** Keys the files say must never be accepted for this host (`@revoked`). */
  revoked: KnownHostsEntry[];
  /** `@cert-authority` lines for the host: offload cannot check host certificates (ssh2 has none). */
  authorities: KnownHostsEntry[];
}

/** ssh's UserKnownHostsFile default; the first file is where new keys are recorded. */
export function defaultUserKnownHostsFiles(home: string = homedir()): string[] {
  return [join(home, '.ssh', 'known_hosts'), join(home, '.ssh', 'known_hosts2')];
}

/** ssh's GlobalKnownHostsFile default: always read, whatever UserKnownHostsFile says. */
export const DEFAULT_GLOBAL_KNOWN_HOSTS_FILES: readonly string[] = ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2'];

export function parseKnownHosts(text: string, file: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    const marker = fields[0] === '@revoked' || fields[0] === '@cert-authority' ? fields.shift() : undefined;
    const [patterns, keyType, base64] = fields;
    // OpenSSH skips lines it cannot parse rather than failing; so do we.
    if (!patterns || !keyType || !base64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return;
    entries.push({
      ...(marker ? { marker: marker as KnownHostsEntry['marker'] } : {}),
      patterns,
      keyType,
      blob: Buffer.from(base64, 'base64'),
      source: `${file}:${index + 1}`,
    });
  });
  return entries;
}

/** The name OpenSSH looks up: bare host on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const lower = host.toLowerCase();
  return port === 22 ? lower : `[${lower}]:${port}`;
}

function wildcardMatch(pattern: string, name: string): boolean {
  const regex = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${regex}$`).test(name);
}

function hashedMatch(pattern: string, name: string): boolean {
  const [, magic, salt, hash] = pattern.split('|');
  if (magic !== '1' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** Whether the entry's patterns name `name` (already in knownHostsName form). */
export function patternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|')) return hashedMatch(patterns, name);
  let matched = false;
  for (const raw of patterns.toLowerCase().split(',')) {
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    if (!wildcardMatch(pattern, name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

/**
 * Keys known for any of `names` (in knownHostsName form, or the HostKeyAlias).
 * Certificate authorities are returned apart: offload does not accept host
 * certificates, so they can only explain why a host is unknown.
 */
export function keysForHost(entries: KnownHostsEntry[], names: string[]): KnownHostKeys {
  const forHost = entries.filter((e) => names.some((name) => patternsMatch(e.patterns, name)));
  return {
    keys: forHost.filter((e) => e.marker === undefined),
    revoked: forHost.filter((e) => e.marker === '@revoked'),
    authorities: forHost.filter((e) => e.marker === '@cert-authority'),
  };
}

export class KnownHostsFileError extends OffloadError {
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot read known_hosts file ${file}: ${reason}`, ExitCode.hostsUnusable, options);
  }
}

/**
 * Every entry of the files that exist; a missing file is simply empty, as for ssh.
 * Read synchronously, as ssh reads them: a few small files, and a login
 * that waited for their completions behind the rest of a start connected
 * tens of milliseconds later (remote/sshLogin.ts prepareLogin).
 */
export function loadKnownHosts(files: string[]): KnownHostsEntry[] {
  return files.flatMap((file) => {
    try {
      return parseKnownHosts(readFileSync(file, 'utf8'), file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw new KnownHostsFileError(file, code ?? String(error), { cause: error });
    }
  });
}
