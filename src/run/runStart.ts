import type { Machine } from '../config/machine.js';
import type { Derivation } from '../drv/derivation.js';
import type { SshPool } from '../remote/sshPool.js';
import { LOCAL_HOST, type Job } from '../schedule/types.js';
import { buildInputs } from './buildInputs.js';
import { queryBuilderHoldings, type BuilderHoldings, type HoldingsSources } from './builderHoldings.js';
import type { BuilderLinks } from './builderLinks.js';
import { closeQuietly, type ChannelPool } from './channelPool.js';
import type { ServeClient } from '../remote/serveClient.js';
import { checkCopyBack, type LocalStoreAccess } from './copyBackCheck.js';
import type { LocalPathInfos } from './localPathInfos.js';

export interface RunStartInput {
  ssh: SshPool;
  machines: readonly Machine[];
  channels: ChannelPool;
  /** Remote builders the first pass may use: the copy-back check asks about them. */
  builders: readonly string[];
  /** The builders' links: logged in to here (if not yet) when the first pass has jobs; asked what they hold. */
  links: Pick<BuilderLinks, 'connect' | 'holdings'>;
  /** What the builders hold, asked already (see askBuilderHoldings); else asked here. */
  holdings?: Promise<BuilderHoldings>;
  /** Outputs the local store lacks: what the builders are asked whether they hold. */
  missing: readonly string[];
  /** The first pass has jobs; without any, no builder is logged in to here and no local channel is opened. */
  work: boolean;
  /** Local paths the first jobs will upload, maybe: described ahead, on the first local channel, into `localInfos`. */
  uploads?: { paths: readonly string[]; localInfos: LocalPathInfos };
  /**
   * The local `nix-store --serve --write` that answered the workload's
   * question, still open: the copy-back check asks the local store on it,
   * and it becomes the first local channel when the answer lets it (it
   * builds from the client's derivations) and it is still usable; it is
   * closed otherwise.
   */
  localServe?: ServeClient;
  storeDir?: string;
  /** The local store is opened in-process: the copy-back check has nothing to ask. */
  storeInProcess?: boolean;
  log: (line: string) => void;
  /** The local store's answer, before any local serve channel opens (it decides how local builds go). */
  onAccess: (access: LocalStoreAccess) => void;
}

/**
 * What the builders already hold, asked as soon as the outputs the local
 * store lacks are known (over the logins connectBuilders started); the run
 * plans with the answer.
 */
export function askBuilderHoldings(sources: HoldingsSources, machines: readonly Machine[], missing: readonly string[]): Promise<BuilderHoldings> {
  return queryBuilderHoldings(sources, machines.map((m) => m.hostName), missing);
}

/**
 * What a run learns before it plans, asked all at once rather than one after
 * the other, since none needs another's answer: whether the local store
 * takes what builders send back (a refusal still stops the run before
 * anything is built) and what the builders already hold. The local serve
 * channel the first transfer needs starts meanwhile, once the local store's
 * answer says how it builds.
 */
export async function startRun(input: RunStartInput): Promise<BuilderHoldings> {
  const { ssh, machines, channels, work } = input;
  const access = checkCopyBack({ ssh, machines, hosts: input.builders, ...(input.storeDir ? { storeDir: input.storeDir } : {}), storeInProcess: input.storeInProcess === true, log: input.log, ...(input.localServe ? { localServe: input.localServe } : {}) }).then(
    (found) => {
      input.onAccess(found);
      // The client-built derivations it was opened for are what a trusting local store builds from.
      if (work && input.localServe?.usable && !found.untrusted) channels.adopt(LOCAL_HOST, input.uploads ? input.uploads.localInfos.wrap(input.localServe) : input.localServe);
      else if (input.localServe) closeQuietly(input.localServe);
      if (work) warmLocalChannel(channels, input.uploads);
    },
    (error: unknown) => {
      if (input.localServe) closeQuietly(input.localServe);
      throw error;
    },
  );
  // Connecting first lets the holdings query and the pressure probe use the connection being made.
  if (work) void input.links.connect();
  const [, holdings] = await Promise.all([access, input.holdings ?? askBuilderHoldings(input.links.holdings, machines, input.missing)]);
  return holdings;
}

/**
 * Opens one local serve channel into the pool ahead of the first job, which
 * would otherwise wait for `nix-store --serve` to start, and asks it about
 * the first uploads meanwhile. A failure here is not reported: the job that
 * needs the channel (or the answer) meets it again and reports it.
 */
function warmLocalChannel(channels: ChannelPool, uploads: RunStartInput['uploads']): void {
  channels.acquire(LOCAL_HOST).then(
    async (channel) => {
      try {
        if (uploads && uploads.paths.length > 0) await uploads.localInfos.lookAhead(channel, uploads.paths);
        channels.release(LOCAL_HOST, channel);
      } catch {
        channels.discard(LOCAL_HOST, channel);
      }
    },
    () => undefined,
  );
}

/** The local inputs of the jobs that can start at once: what the first uploads send, unless a builder has them already. */
export function firstUploads(jobs: readonly Job[], drvs: ReadonlyMap<string, Derivation>, localPaths: ReadonlySet<string>): string[] {
  const paths = new Set<string>();
  for (const job of jobs) {
    if ((job.action ?? 'build') !== 'build' || job.deps.length > 0) continue;
    for (const input of buildInputs(drvs.get(job.id)!, drvs)) if (localPaths.has(input)) paths.add(input);
  }
  return [...paths];
}
