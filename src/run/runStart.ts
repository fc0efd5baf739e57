import type { Machine } from '../config/machine.js';
import type { Derivation } from '../drv/derivation.js';
import type { SshPool } from '../remote/sshPool.js';
import { LOCAL_HOST, type Job } from '../schedule/types.js';
import { buildInputs } from './buildInputs.js';
import { queryBuilderHoldings, type BuilderHoldings } from './builderHoldings.js';
import type { ChannelPool } from './channelPool.js';
import { checkCopyBack, type LocalStoreAccess } from './copyBackCheck.js';
import type { LocalPathInfos } from './localPathInfos.js';
import type { PressureGate } from './pressureGate.js';

export interface RunStartInput {
  ssh: SshPool;
  machines: readonly Machine[];
  channels: ChannelPool;
  pressure: PressureGate;
  /** Remote builders the first pass may use: the copy-back check asks about them. */
  builders: readonly string[];
  /** Outputs the local store lacks: what the builders are asked whether they hold. */
  missing: readonly string[];
  /** The first pass has jobs; without any, no builder is connected for pressure and no local channel opened. */
  work: boolean;
  /** Local paths the first jobs will upload, maybe: described ahead, on the first local channel, into `localInfos`. */
  uploads?: { paths: readonly string[]; localInfos: LocalPathInfos };
  storeDir?: string;
  /** The local store is opened in-process: the copy-back check has nothing to ask. */
  storeInProcess?: boolean;
  log: (line: string) => void;
  /** The local store's answer, before any local serve channel opens (it decides how local builds go). */
  onAccess: (access: LocalStoreAccess) => void;
}

export interface RunStart {
  holdings: BuilderHoldings;
  /** The builders' first pressure look, still running maybe: the first pass waits for it before it dispatches. */
  firstLook: Promise<void> | undefined;
}

/**
 * What a run learns before it plans, asked all at once rather than one after
 * the other, since none needs another's answer: whether the local store
 * takes what builders send back (a refusal still stops the run before
 * anything is built), what the builders already hold, and their pressure.
 * One SSH connection per builder carries the last two. The local serve
 * channel the first transfer needs starts meanwhile, once the local store's
 * answer says how it builds.
 */
export async function startRun(input: RunStartInput): Promise<RunStart> {
  const { ssh, machines, channels, work } = input;
  const access = checkCopyBack({ ssh, machines, hosts: input.builders, ...(input.storeDir ? { storeDir: input.storeDir } : {}), storeInProcess: input.storeInProcess === true, log: input.log }).then((found) => {
    input.onAccess(found);
    if (work) warmLocalChannel(channels, input.uploads);
  });
  // Connecting first lets the pressure probe (which never connects by itself) use the connection being made.
  if (work) for (const m of machines) ssh.connect(m).catch(() => undefined);
  const firstLook = work ? input.pressure.look() : undefined;
  const [, holdings] = await Promise.all([access, queryBuilderHoldings(channels, machines.map((m) => m.hostName), input.missing)]);
  return { holdings, firstLook };
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
