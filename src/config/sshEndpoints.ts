import { SshConfigError } from './errors.js';
import type { SshEndpoint } from './machine.js';
import { resolveSshHost, type IncludeLoader, type ParsedSshConfig, type SshGiven, type SshHostSettings, type SshLocalContext, type SshOption, type UnhonouredSshOption } from './sshConfig.js';
import { formatJumpHost } from './sshJumpHosts.js';
import { expandHome } from './sshTokens.js';

/** ssh_config as ssh would read it for every host of a run. */
export interface SshConfigContext {
  configs: ParsedSshConfig[];
  include: IncludeLoader;
  local: SshLocalContext;
}

/** What resolving one builder found: its endpoint (with every jump host on the way) and what could not be honoured. */
export interface ResolvedEndpoint {
  endpoint: SshEndpoint;
  /** Per host on the route (the builder and each jump host), options offload cannot act on. */
  unhonoured: { host: string; options: UnhonouredSshOption[] }[];
  warnings: string[];
}

/** A ProxyJump chain longer than this is a loop in ssh_config (ssh would recurse until it runs out of something). */
const MAX_HOPS = 16;

/**
 * One host through ssh_config, and its route: ProxyJump `a,b` means b is
 * reached through a, and the host through b. As in OpenSSH, which runs
 * `ssh -l USER -p PORT -J a b -W host:port` for that, each jump host gets
 * its own ssh_config Host block, its user and port from the ProxyJump
 * value win over that block, and the hops before it are its own ProxyJump;
 * the first hop's own ProxyJump or ProxyCommand applies to it.
 */
export function resolveSshEndpoint(
  name: string,
  context: SshConfigContext,
  given: SshGiven & { sshKey?: string } = {},
  commandLine: readonly SshOption[] = [],
  depth = 0,
): ResolvedEndpoint {
  if (depth > MAX_HOPS) throw new SshConfigError(`ProxyJump for ${name}: more than ${MAX_HOPS} jump hosts on the way (a loop in ssh_config? a jump host that a "Host *" block gives a ProxyJump needs "ProxyJump none" in its own block before it)`);
  const ssh = resolveSshHost(name, context.configs, context.local, { ...(given.user !== undefined && { user: given.user }), ...(given.port !== undefined && { port: given.port }) }, context.include, commandLine);
  const endpoint = toEndpoint(name, ssh, context.local.homeDir, given.sshKey);
  const resolved: ResolvedEndpoint = { endpoint, unhonoured: ssh.unhonoured ? [{ host: name, options: ssh.unhonoured }] : [], warnings: [...ssh.warnings] };
  if (ssh.proxyJump) {
    const hops = ssh.proxyJump;
    const last = hops[hops.length - 1]!;
    const hopOptions: SshOption[] = [];
    const from = `ProxyJump of ${name}`;
    if (last.user !== undefined) hopOptions.push({ keyword: 'User', value: last.user, from });
    if (last.port !== undefined) hopOptions.push({ keyword: 'Port', value: String(last.port), from });
    if (hops.length > 1) hopOptions.push({ keyword: 'ProxyJump', value: hops.slice(0, -1).map(formatJumpHost).join(','), from });
    const hop = resolveSshEndpoint(last.host, context, {}, hopOptions, depth + 1);
    endpoint.proxy = { jump: hop.endpoint };
    resolved.unhonoured.push(...hop.unhonoured);
    resolved.warnings.push(...hop.warnings);
  } else if (ssh.proxyCommand !== undefined) {
    endpoint.proxy = { command: ssh.proxyCommand };
  }
  return resolved;
}

function toEndpoint(name: string, ssh: SshHostSettings, homeDir: string, sshKey: string | undefined): SshEndpoint {
  const identityFiles = [...new Set([...(sshKey !== undefined ? [expandHome(sshKey, homeDir)] : []), ...ssh.identityFiles])];
  const endpoint: SshEndpoint = {
    hostName: name,
    address: ssh.hostName,
    port: ssh.port ?? 22,
    acceptUnknownHostKey: ssh.acceptUnknownHostKey,
  };
  if (ssh.user !== undefined) endpoint.sshUser = ssh.user;
  if (sshKey !== undefined) endpoint.sshKey = identityFiles[0]!;
  if (identityFiles.length > 0) endpoint.identityFiles = identityFiles;
  if (ssh.identitiesOnly !== undefined) endpoint.identitiesOnly = ssh.identitiesOnly;
  if (ssh.identityAgent !== undefined) endpoint.identityAgent = ssh.identityAgent;
  if (ssh.userKnownHostsFiles !== undefined) endpoint.userKnownHostsFiles = ssh.userKnownHostsFiles;
  if (ssh.globalKnownHostsFiles !== undefined) endpoint.globalKnownHostsFiles = ssh.globalKnownHostsFiles;
  if (ssh.hostKeyAlias !== undefined) endpoint.hostKeyAlias = ssh.hostKeyAlias;
  if (ssh.strictHostKeyChecking !== undefined) endpoint.strictHostKeyChecking = ssh.strictHostKeyChecking;
  if (ssh.hashKnownHosts !== undefined) endpoint.hashKnownHosts = ssh.hashKnownHosts;
  if (ssh.connectTimeoutSeconds !== undefined) endpoint.connectTimeoutMs = ssh.connectTimeoutSeconds * 1000;
  if (ssh.serverAliveIntervalSeconds !== undefined) endpoint.keepaliveIntervalMs = ssh.serverAliveIntervalSeconds * 1000;
  if (ssh.serverAliveCountMax !== undefined) endpoint.keepaliveCountMax = ssh.serverAliveCountMax;
  if (ssh.compression) endpoint.compression = true;
  return endpoint;
}

/**
 * The one warning line of a run about ssh_config options offload cannot act
 * on, each named once with the hosts it was set for; undefined when there is none.
 */
export function unhonouredWarning(found: ResolvedEndpoint['unhonoured']): string | undefined {
  const byOption = new Map<string, { option: UnhonouredSshOption; hosts: Set<string> }>();
  const files = new Set<string>();
  for (const { host, options } of found) {
    for (const option of options) {
      const key = option.keyword.toLowerCase();
      const entry = byOption.get(key) ?? { option, hosts: new Set<string>() };
      entry.hosts.add(host);
      byOption.set(key, entry);
      files.add(option.from);
    }
  }
  if (byOption.size === 0) return undefined;
  const parts = [...byOption.values()].map(({ option, hosts }) => {
    const notes = [[...hosts].join(', '), ...(option.unknown ? ['not an option offload knows'] : []), ...(option.why !== undefined ? [option.why] : [])];
    return `${option.keyword} (${notes.join('; ')})`;
  });
  return `ssh_config options offload cannot honour, ignored: ${parts.join(', ')} [set in ${[...files].join(', ')}]`;
}

/** One step on the way to a host, first step first. */
export type RouteStep = { jumpHost: string; user?: string; address: string; port: number } | { proxyCommand: string };

/** The hops and the ProxyCommand a connection to `endpoint` goes through, in the order they are used; empty for a direct connection. */
export function routeOf(endpoint: SshEndpoint): RouteStep[] {
  const proxy = endpoint.proxy;
  if (proxy === undefined) return [];
  if ('command' in proxy) return [{ proxyCommand: proxy.command }];
  const hop = proxy.jump;
  return [...routeOf(hop), { jumpHost: hop.hostName, ...(hop.sshUser !== undefined && { user: hop.sshUser }), address: hop.address, port: hop.port }];
}

/** `via jump@10.0.0.1:22, 10.0.0.2:2222` / `via ProxyCommand nc 10.1.2.3 22`; undefined for a direct connection. */
export function describeRoute(endpoint: SshEndpoint): string | undefined {
  const steps = routeOf(endpoint);
  if (steps.length === 0) return undefined;
  const step = (s: RouteStep) => ('proxyCommand' in s ? `ProxyCommand ${s.proxyCommand}` : `${s.user !== undefined ? `${s.user}@` : ''}${s.address.includes(':') ? `[${s.address}]` : s.address}:${s.port}`);
  return `via ${steps.map(step).join(', ')}`;
}
