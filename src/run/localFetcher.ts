import { LocalStore } from '../store/localStore.js';

export interface FetchOutcome {
  fetched: string[];
  /** Path → what Nix said about it (or that it said nothing). */
  failed: Map<string, string>;
}

export interface LocalFetcherOptions {
  storeDir: string;
  /** Settings for the fetching Nix (`--option NAME VALUE`), read when the first fetch starts. */
  nixOptions: () => ReadonlyArray<readonly [string, string]>;
  /** `nix-store --serve` processes fetching at once (each fetches its batch concurrently itself). */
  processes?: number;
}

interface Request {
  paths: string[];
  resolve: (outcome: FetchOutcome) => void;
  reject: (error: unknown) => void;
}

/**
 * Fetches into the local store through Nix itself: a `nix-store --serve`
 * child is asked for the paths' validity with substitution on, so Nix
 * downloads, checks signatures and NAR hashes, and registers the paths.
 * Requests that arrive together (the executor starts every ready fetch in
 * one pass) go to Nix as one batch, which it downloads in parallel; a few
 * children let later batches start before earlier ones end.
 */
export class LocalFetcher {
  private store: LocalStore | undefined;
  private readonly processes: number;
  private pending: Request[] = [];
  private active = 0;
  private flushing = false;
  private warm = false;

  constructor(private readonly options: LocalFetcherOptions) {
    this.processes = Math.max(1, options.processes ?? 2);
  }

  fetch(paths: string[]): Promise<FetchOutcome> {
    return new Promise((resolve, reject) => {
      this.pending.push({ paths, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => {
          this.flushing = false;
          this.flush();
        });
      }
    });
  }

  close(): void {
    this.store?.close();
  }

  private flush(): void {
    // Nix 2.8's narinfo disk cache fails ("constraint failed") when two processes register the
    // same cache at once: one process fetches until the first batch is in, then the others join.
    const limit = this.warm ? this.processes : 1;
    while (this.pending.length > 0 && this.active < limit) {
      const share = Math.ceil(this.pending.length / (limit - this.active));
      const batch = this.pending.splice(0, share);
      this.active++;
      void this.run(batch).finally(() => {
        this.active--;
        this.flush();
      });
    }
  }

  private async run(batch: Request[]): Promise<void> {
    const lines: string[] = [];
    // Created on first use, so the caches found unreachable meanwhile are left out of its settings.
    this.store ??= new LocalStore({
      storeDir: this.options.storeDir,
      maxConnections: this.processes,
      args: this.options.nixOptions().flatMap(([name, value]) => ['--option', name, value]),
    });
    const paths = batch.flatMap((r) => r.paths);
    let valid: Set<string>;
    try {
      valid = await this.store.substitute(paths, (line) => lines.push(line));
    } catch (firstError) {
      // A fetching process that died (Nix aborts on some store errors) gets one more try in a fresh one.
      try {
        valid = await this.store.substitute(paths, (line) => lines.push(line));
      } catch {
        for (const r of batch) r.reject(firstError);
        return;
      }
    }
    this.warm = true;
    for (const r of batch) {
      const failed = new Map<string, string>();
      for (const p of r.paths) if (!valid.has(p)) failed.set(p, reasonFor(p, lines));
      r.resolve({ fetched: r.paths.filter((p) => valid.has(p)), failed });
    }
  }
}

/** Nix's own words about a path it could not fetch: the line naming it, else its last error. */
function reasonFor(path: string, lines: string[]): string {
  const hash = path.slice(path.lastIndexOf('/') + 1, path.lastIndexOf('/') + 33);
  const clean = (l: string) => l.replace(/\x1b\[[0-9;]*m/g, '').replace(/^(warning|error):\s*/g, '').trim();
  const naming = lines.filter((l) => l.includes(hash) && /error|warning|fail|mismatch|not exist/i.test(l));
  const line = naming.at(-1) ?? lines.filter((l) => /error/i.test(l)).at(-1);
  return line ? clean(line).slice(0, 300) : 'Nix did not say why';
}
