/**
 * Plain data the scheduler works on. It never sees SSH, files or Nix: the
 * CLI turns machines + derivations into Hosts + Jobs.
 */
export const LOCAL_HOST = 'local';

/**
 * The lane fetches and copies run on: not a machine but the local store's
 * downloads, with `max-substitution-jobs` slots. Modelling it as a host puts
 * downloads on the same clock as builds, so a big download on the critical
 * path is planned like a build.
 */
export const TRANSFER_LANE = 'caches';

/** `build` runs the derivation; `fetch` substitutes its outputs from a cache; `copy` brings them from the builder that holds them. */
export type JobAction = 'build' | 'fetch' | 'copy';

export interface Host {
  /** hostName, or `local` for this machine. */
  id: string;
  systems: string[];
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  /** Concurrent build slots. The local host may have 0 (then only builtin jobs run there). */
  maxJobs: number;
  /** Duration on this host = estimate / speedFactor. */
  speedFactor: number;
  isLocal: boolean;
  /** The transfer lane (TRANSFER_LANE): takes fetch and copy jobs only. */
  transferLane?: boolean;
}

export interface Job {
  /** The derivation path. */
  id: string;
  name: string;
  system: string;
  requiredFeatures: string[];
  /** Estimated seconds on a speedFactor-1 host. */
  duration: number;
  /** Where the estimate came from: `history`, `rules` or `default`. */
  estimateSource: 'history' | 'rules' | 'default';
  /** Jobs (ids) that must finish first. Only jobs in the same set; already-built inputs are absent. */
  deps: string[];
  preferLocalBuild: boolean;
  /** builtin: derivations always run on the local host. */
  isBuiltin: boolean;
  /** Default `build`; fetch and copy jobs run on the transfer lane. */
  action?: JobAction;
  /** Fetch and copy jobs: bytes to move, and where from (a cache URL or a builder). */
  transfer?: {
    bytes: number;
    narBytes?: number;
    from: string;
    paths: string[];
    /**
     * A fetch only builders need (builders-use-substitutes): the builder a
     * build needing it runs on fetches it itself; it never passes through
     * the local store. Planned on the transfer lane all the same, so its
     * download is on the plan's clock.
     */
    onBuilder?: boolean;
  };
}

export interface Assignment {
  jobId: string;
  host: string;
  start: number;
  end: number;
}

export interface Plan {
  makespan: number;
  assignments: Assignment[];
  /** Job ids along the longest (estimated) path, first to last. */
  criticalPath: string[];
  /** Which candidate schedule won: the list scheduler or a trivial baseline. */
  policy: string;
  /** Makespans of every candidate, for the report. */
  candidates: Record<string, number>;
  /** max(critical path at the fastest fitting speed, work / capacity). */
  lowerBound: number;
  /** Hosts the winning policy uses; the live run is restricted to them. */
  hosts: string[];
  /**
   * When the winner is a baseline: the hosts it lets take non-builtin jobs
   * (builtin jobs still go to local). Absent = every host in `hosts`.
   * Pass it as OnlineScheduler's `regularHosts` so the live run matches.
   */
  regularHosts?: string[];
}
