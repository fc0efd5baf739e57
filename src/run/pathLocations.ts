import { LOCAL_HOST } from '../schedule/types.js';

/**
 * Which hosts hold which store paths, as far as this run knows. Outputs stay
 * where they were built until a job elsewhere needs them, so the run must
 * remember where to stream each one from. The local store is the host
 * `local`. Only what this run saw is recorded: a host may hold more (a
 * validity query on the host is the judge), never less unless it went down.
 */
export class PathLocations {
  private readonly hostsByPath = new Map<string, Set<string>>();

  add(path: string, host: string): void {
    let hosts = this.hostsByPath.get(path);
    if (!hosts) this.hostsByPath.set(path, (hosts = new Set()));
    hosts.add(host);
  }

  addAll(paths: Iterable<string>, host: string): void {
    for (const p of paths) this.add(p, host);
  }

  has(path: string, host: string): boolean {
    return this.hostsByPath.get(path)?.has(host) ?? false;
  }

  /** Seen on some host in this run, even if every host holding it has gone down since. */
  known(path: string): boolean {
    return this.hostsByPath.has(path);
  }

  hostsOf(path: string): string[] {
    return [...(this.hostsByPath.get(path) ?? [])];
  }

  /**
   * Where to fetch `path` from for a job on `target`: the local store when it
   * has the path (no second SSH hop), else the first remote that has it.
   */
  sourceFor(path: string, target: string): string | undefined {
    const hosts = this.hostsByPath.get(path);
    if (!hosts || hosts.size === 0) return undefined;
    if (hosts.has(target)) return target;
    if (hosts.has(LOCAL_HOST)) return LOCAL_HOST;
    return [...hosts][0];
  }

  /** Paths some builder holds (not the local store): path → the first such builder. */
  remoteHolders(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [path, hosts] of this.hostsByPath) {
      const remote = [...hosts].find((h) => h !== LOCAL_HOST);
      if (remote !== undefined) out.set(path, remote);
    }
    return out;
  }

  /** Known once, but every host that held it went down. */
  wasLost(path: string): boolean {
    return this.hostsByPath.get(path)?.size === 0;
  }

  /** A host that went down takes its paths with it; returns the paths no host has any more. */
  forgetHost(host: string): string[] {
    const lost: string[] = [];
    for (const [path, hosts] of this.hostsByPath) {
      if (hosts.delete(host) && hosts.size === 0) lost.push(path);
    }
    return lost;
  }
}
