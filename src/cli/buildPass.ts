import { checkKeyFile } from '../config/keyFile.js';
import type { Machine, MachinesConfig } from '../config/machine.js';
import type { Derivation } from '../drv/derivation.js';
import { OffloadError } from '../errors/offloadError.js';
import { openPlannedHosts } from '../run/connectHosts.js';
import type { ChannelPool } from '../run/channelPool.js';
import { Executor, type CopyBack } from '../run/executor.js';
import { defaultHostHealthOptions } from '../run/hostHealth.js';
import { livePlacement, liveScheduler } from '../run/livePlacement.js';
import type { LocalFetcher } from '../run/localFetcher.js';
import type { PressureGate } from '../run/pressureGate.js';
import type { SlotGate } from '../run/slotGate.js';
import { splitFetchesOnBuilders } from '../schedule/fetchOnBuilders.js';
import { firstWave } from '../schedule/firstWaveHosts.js';
import { planBuild } from '../schedule/planBuild.js';
import { TRANSFER_LANE, type Host, type Job } from '../schedule/types.js';
import type { BuildObservers } from './buildObservers.js';

export interface PassInput {
  jobs: Job[];
  hosts: Host[];
  config: MachinesConfig;
  channels: ChannelPool;
  /** Logs in to a builder (or waits for the login in progress): rejects with the classified SSH error. */
  login: (host: string) => Promise<void>;
  slots: SlotGate;
  pressure: PressureGate;
  log: (line: string) => void;
  now: () => number;
  output: BuildObservers;
  /** What the pass takes of `offload build`'s options. */
  opts: { keepGoing?: boolean; copyBack: CopyBack; hostBackoff: number };
  held: ReadonlyMap<string, string>;
  localPaths: ReadonlySet<string>;
  drvs: ReadonlyMap<string, Derivation>;
  roots: string[];
  rootOutputs: ReadonlyMap<string, readonly string[]> | undefined;
  fetcher: LocalFetcher | undefined;
  /** See ExecutorOptions.signsAfterBuild. */
  signsAfterBuild: (host: string) => boolean;
  /** See ExecutorOptions.readLocalFiles. */
  readLocalFiles: boolean;
}

/**
 * One pass: plan the jobs, connect the planned builders, and run the
 * executor on them. Fetches builders make are planned but not scheduled:
 * a build fetches them on its host when it starts.
 */
export async function startPass(p: PassInput): Promise<Executor> {
  const plan = planBuild(p.jobs, p.hosts);
  const { scheduled, onBuilders } = splitFetchesOnBuilders(p.jobs);
  const placement = livePlacement(plan, p.hosts);
  for (const m of p.config.machines) {
    if (placement.planned.includes(m.hostName) && m.sshKey) checkKeyFile(m.sshKey, m.hostName);
  }
  const reserves = await usableReserves(p.config.machines, placement.reserves, p.log);
  const scheduler = liveScheduler(plan, scheduled, p.hosts, placement);
  const executor = new Executor({
    drvs: p.drvs,
    roots: p.roots,
    ...(p.rootOutputs ? { rootOutputs: p.rootOutputs } : {}),
    jobs: scheduled,
    fetchesOnBuilders: onBuilders,
    scheduler,
    channels: p.channels,
    localPaths: p.localPaths,
    held: p.held,
    reserveHosts: reserves,
    options: {
      keepGoing: p.opts.keepGoing ?? false,
      copyBack: p.opts.copyBack,
      buildersUseSubstitutes: p.config.local.buildersUseSubstitutes,
      buildLimits: { maxSilentTime: p.config.local.maxSilentTime, buildTimeout: p.config.local.buildTimeout },
      hostHealth: { ...defaultHostHealthOptions, backoffSeconds: p.opts.hostBackoff },
      signsAfterBuild: p.signsAfterBuild,
      readLocalFiles: p.readLocalFiles,
    },
    log: p.log,
    now: p.now,
    onEvent: p.output.begin({ jobs: p.jobs, hosts: p.hosts, plan, now: p.now }),
    slots: p.slots,
    pressure: p.pressure,
    ...(p.fetcher ? { fetcher: p.fetcher } : {}),
  });
  const reach = { firstWave: firstWave(plan), login: p.login };
  await openPlannedHosts(p.channels, placement.planned.filter((h) => h !== TRANSFER_LANE), reach, (host, error) => executor.hostDown(host, error));
  return executor;
}


/** A reserve whose key file is unusable is dropped with a warning rather than failing a run that may not need it. */
async function usableReserves(machines: Machine[], reserves: string[], log: (line: string) => void): Promise<string[]> {
  const usable: string[] = [];
  for (const name of reserves) {
    const m = machines.find((x) => x.hostName === name);
    try {
      if (m?.sshKey) checkKeyFile(m.sshKey, m.hostName);
      usable.push(name);
    } catch (error) {
      if (!(error instanceof OffloadError)) throw error;
      log(`offload: ${name} is not kept in reserve: ${error.message}`);
    }
  }
  return usable;
}

