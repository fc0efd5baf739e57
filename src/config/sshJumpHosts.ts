import { SshConfigError } from './errors.js';

/** One hop of a ProxyJump list: `[user@]host[:port]` or `ssh://[user@]host[:port]`. */
export interface JumpHost {
  host: string;
  user?: string;
  port?: number;
}

/**
 * A ProxyJump value (or `-J`) as OpenSSH's parse_jump reads it: hops
 * separated by commas, each `[user@]host[:port]` (an IPv6 address in
 * brackets) or an `ssh://` URI. The first hop is connected to first.
 */
export function parseJumpHosts(value: string, what: string): JumpHost[] {
  const hops = value.split(',').map((hop) => hop.trim());
  if (hops.some((hop) => hop === '')) throw new SshConfigError(`${what}: "${value}" has an empty jump host`);
  return hops.map((hop) => parseHop(hop, value, what));
}

function parseHop(hop: string, value: string, what: string): JumpHost {
  const bad = (why: string) => new SshConfigError(`${what}: jump host "${hop}" in "${value}" ${why}`);
  let rest = hop.startsWith('ssh://') ? hop.slice('ssh://'.length).replace(/\/$/, '') : hop;
  if (rest.includes('/')) throw bad('is not [user@]host[:port]');
  let user: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    user = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (user === '') throw bad('has an empty user');
  }
  let host = rest;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(rest);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else if ((rest.match(/:/g) ?? []).length === 1) {
    [host, portText] = rest.split(':') as [string, string];
  }
  if (host === '') throw bad('has no host');
  const jump: JumpHost = { host };
  if (user !== undefined) jump.user = user;
  if (portText !== undefined) {
    const port = /^\d+$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) throw bad(`has port "${portText}", not a number from 1 to 65535`);
    jump.port = port;
  }
  return jump;
}

/** Back to ProxyJump syntax, for a hop's own `-J` and for messages. */
export function formatJumpHost(jump: JumpHost): string {
  const host = jump.host.includes(':') ? `[${jump.host}]` : jump.host;
  return `${jump.user !== undefined ? `${jump.user}@` : ''}${host}${jump.port !== undefined ? `:${jump.port}` : ''}`;
}
