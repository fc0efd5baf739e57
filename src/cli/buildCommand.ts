import { Option, type Command } from 'commander';
import { performance } from 'node:perf_hooks';
import { loadMachinesConfig } from '../config/loadMachines.js';
import type { Machine } from '../config/machine.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { defaultDurationRules } from '../schedule/durations.js';
import { loadDurationRules } from './durationRulesFile.js';
import { LOCAL_HOST } from '../schedule/types.js';
import type { MachinesConfig } from '../config/machine.js';
import type { Substitute } from '../graph/queryMissing.js';
import { assertEveryJobFits, fits } from '../schedule/fit.js';
import { jobsForWork } from '../schedule/transferJobs.js';
import { markFetchesOnBuilders } from '../schedule/fetchOnBuilders.js';
import { firstWaveHosts } from '../schedule/firstWaveHosts.js';
import { DEFAULT_STORE_DIR } from '../storePath/storePath.js';
import type { LocalStoreAccess } from '../run/copyBackCheck.js';
import { queryValidLocalPaths } from '../store/localStore.js';
import { LocalFetcher } from '../run/localFetcher.js';
import type { JobRecord } from '../run/runResult.js';
import { openSubstituters, transferEstimates } from './substitution.js';
import { addSubstitutionOptions, substitutionSettings, type SubstitutionOptions } from './substitutionSettings.js';
import { assertInputAddressed } from '../run/buildInputs.js';
import type { Executor, CopyBack } from '../run/executor.js';
import { startPass } from './buildPass.js';
import { askBuilderHoldings, firstUploads, startRun } from '../run/runStart.js';
import { linkBuilders, type BuilderLinks } from '../run/builderLinks.js';
import { likelyFirstBuilders, mayReachBuildersEarly } from '../schedule/earlyReach.js';
import type { DerivationSet } from '../drv/derivation.js';
import { LocalPathInfos } from '../run/localPathInfos.js';
import { nixStateDirWritable, opensStoreInProcess, storeFilesReadable } from '../store/storeInProcess.js';
import { SlotGate } from '../run/slotGate.js';
import type { PressureSample } from '../run/pressureGate.js';
import { localRootOutputs, runExitCode, runFailed, type RunResult } from '../run/runResult.js';
import { outLinks, type OutLink } from '../store/outLinks.js';
import { addPermRoots, checkOutLinksFree } from '../store/permRoots.js';
import { exitCodeHelp } from './exitCodes.js';
import { addExpressionOptions, expressionOptions, installablesHelp, type ExpressionCliOptions } from './expressionOptions.js';
import { onTerminationSignals, type TerminationSignal } from './terminationSignals.js';
import { addBuildOutputOptions, BuildObservers, type BuildOutputOptions } from './buildObservers.js';
import { addHistoryOptions, type HistoryOptions } from './runHistory.js';
import { machineLoadOptions } from './planCommand.js';
import { addMachineOptions, addOutputOptions, parseSeconds, parseWholeSeconds, type MachineOptions, type OutputOptions } from './sharedOptions.js';
import { estimateKeys, hostsFromConfig, loadWorkload, missingOutputs, missingWork, type Workload } from './workload.js';
import { EarlyOutput } from './earlyOutput.js';
import { openSlotLeases, resolveState } from './sharedState.js';
import { hostname } from 'node:os';

export interface BuildOptions extends MachineOptions, OutputOptions, BuildOutputOptions, HistoryOptions, SubstitutionOptions, ExpressionCliOptions {
  storeDir?: string;
  durations?: string;
  keepGoing?: boolean;
  copyBack: CopyBack;
  connectTimeout: number;
  compress?: boolean;
  keepaliveInterval: number;
  hostBackoff: number;
  maxSilentTime?: number;
  timeout?: number;
  /** `--out-link PATH` (default `result`); false with `--no-out-link`. */
  outLink: string | false;
  slotPriority: 'critical-path' | 'arrival';
}

export function registerBuildCommand(program: Command, run: (action: () => Promise<number>) => Promise<void>): void {
  const cmd = program
    .command('build')
    .description('build derivations across the machines: critical path first, inputs in and outputs back over one SSH connection per host')
    .argument('[installables...]', 'what to build: .nix files, flake references, .drv paths, output paths (default: ./default.nix)')
    .option('--store-dir <dir>', 'Nix store directory holding the .drv files', '/nix/store')
    .option('--durations <file>', 'duration rules (format of durations.json) for the scheduler')
    .option('-k, --keep-going', 'after a failure, build everything that does not depend on it before exiting')
    .addOption(
      new Option('--copy-back <which>', "which outputs come back to the local store: 'needed' (final outputs and inputs of local builds) or 'all' (every output as soon as it is built, like Nix)")
        .choices(['needed', 'all'])
        .default('needed'),
    )
    .option('--connect-timeout <s>', 'seconds for TCP connect, SSH handshake and login to a builder (ssh_config ConnectTimeout wins for its host)', parseSeconds, 10)
    .option('--compress', 'compress every SSH link (zlib), as ssh_config Compression yes does per host: worth it on a slow link, a cost on a fast one')
    .option('--keepalive-interval <s>', 'seconds between SSH keep-alives; a builder that misses 3 in a row counts as hung (ssh_config ServerAliveInterval/CountMax win for their host)', parseSeconds, 5)
    .option('--host-backoff <s>', 'seconds a failing builder stays out of rotation the first time (doubles each further time)', parseSeconds, 30)
    .option('--max-silent-time <s>', "stop a build that prints nothing for this many seconds, exit 101 (0 = no limit; default: Nix's max-silent-time)", parseWholeSeconds)
    .option('--timeout <s>', "stop a build that runs longer than this many seconds, exit 101 (0 = no limit; default: Nix's timeout)", parseWholeSeconds)
    .option('-o, --out-link <path>', 'name of the symlinks to the outputs, each a GC root: PATH, PATH-dev, PATH-2, … as nix-build names them', 'result')
    .option('--no-out-link', 'make no result symlinks (and so no GC roots)')
    .addOption(
      new Option('--slot-priority <order>', "how this run claims builder slots shared with other runs: 'critical-path' (the longest remaining path goes first, fleet-wide) or 'arrival' (first come, first served)")
        .choices(['critical-path', 'arrival'])
        .default('critical-path'),
    );
  addExpressionOptions(cmd);
  addMachineOptions(cmd);
  addSubstitutionOptions(cmd);
  addOutputOptions(cmd);
  addBuildOutputOptions(cmd);
  addHistoryOptions(cmd, 'no estimates from it, nothing recorded');
  cmd.addHelpText(
    'after',
    () => `
Prints the output paths of the given derivations, one per line; everything else goes to stderr:
a live view on a terminal (one line per host), one line per event otherwise. Finished builds
are recorded in the history, so the next plan knows how long they take.

--json-events prints NDJSON on stdout: one object per event ({"type":"jobStarted"|"jobFinished"|
"jobSkipped"|"hostDown"|"hostBack"|"buildLog"|"transferStarted"|"transferProgress"|
"transferFinished","time":<s since start>,…}), then one last line {"type":"result",…} with
what --json prints. Transfers report NAR bytes moved, a few times a second.

${installablesHelp}

Examples:
  offload build .#hello
  offload build '<nixpkgs>' -A hello --machines machines.json
  offload build /nix/store/…-openssl-3.3.2.drv^dev,out
  offload build ./result.drv --max-jobs 0 --hosts ruby,kana --json | jq .makespan
  offload build ./result.drv --report run.html --log-file offload.log
  offload build ./result.drv --log-format internal-json |& nom --json
  offload build ./result.drv --json-events | jq -c 'select(.type == "jobFinished")'

${exitCodeHelp()}`,
  );
  cmd.action((installables: string[], opts: BuildOptions) => run(() => buildAction(installables, opts)));
}

export async function buildAction(installables: string[], opts: BuildOptions): Promise<number> {
  // ssh2 (a tenth of what a start loads) loads while Nix reads the configuration and the closure.
  const sshModule = import('../remote/sshPool.js');
  sshModule.catch(() => undefined);
  // Independent: `nix show-config` (machines) runs while the closure is read and the local store asked.
  // A machines error still wins, as when they ran one after the other.
  const early = new EarlyOutput();
  // Nix's `store` setting, from the configuration read meanwhile: an in-process store's database answers the local questions.
  let localStoreSetting: string | undefined;
  let storeSettingKnown!: (store: string | undefined) => void;
  const storeSetting = new Promise<string | undefined>((resolve) => (storeSettingKnown = resolve));
  const loading = loadWorkload(installables, { storeDir: opts.storeDir, askLocalStore: true, keepLocalServe: true, expression: expressionOptions(opts), onClosure: (set) => reachEarly({ closure: set }), localStore: storeSetting, debug: early.debug });
  loading.catch(() => undefined);
  // Listening from the start: a builder may be logged in to long before the run begins, and Ctrl-C then must still end it cleanly (exit 130).
  const interruption: Interruption = {};
  const stopListening = onTerminationSignals((signal) => {
    interruption.signal ??= signal;
    if (interruption.stop) return interruption.stop(signal);
    // Before the run has begun: the logins under way are abandoned; the run starts nothing and ends interrupted.
    void reach?.then((links) => closeLinks(links, signal), () => undefined);
  }, early.warn);
  // Set by checkCopyBack before the first local channel opens.
  const localStore: LocalStoreAccess = { untrusted: false, signsAfterBuild: [] };
  const localInfos = new LocalPathInfos();
  let executor: Executor | undefined;
  const sampledEarly: Array<[string, PressureSample, boolean]> = [];
  let reach: Promise<BuilderLinks> | undefined;
  // The builders are logged in to as soon as they and the closure are known, and nothing in it can be bad input for them.
  const known: { closure?: DerivationSet; machines?: readonly Machine[] } = {};
  let linked: BuilderLinks | undefined;
  let reachNow = false;
  const reachEarly = (learnt: typeof known) => {
    Object.assign(known, learnt);
    reachNow ||= known.closure !== undefined && known.machines !== undefined && mayReachBuildersEarly(known.closure.drvs.values(), known.machines);
    // At once, not on a later tick: the local store's process spawned right after the closure would hold the login up.
    if (reachNow && linked && !linked.connected) {
      void linked.connect();
      linked.warm(likelyFirstBuilders(known.closure!.drvs.values(), known.machines!));
    }
  };
  // Machines given on the command line (or in offload's file) are known before Nix's configuration is read.
  const linkTo = (machines: readonly Machine[]) => {
    reach = linkBuilders(machines, {
      sshModule,
      ssh: { connectTimeoutMs: opts.connectTimeout * 1000, keepaliveIntervalMs: opts.keepaliveInterval * 1000, keepaliveCountMax: 3, warn: early.warn, debug: early.debug, compress: opts.compress === true },
      channels: { ...(opts.storeDir ? { storeDir: opts.storeDir } : {}), localBuildsFromStoreDerivations: () => localStore.untrusted, localInfos, localStore: () => localStoreSetting, debug: early.debug },
      onDown: (host, error) => executor?.hostDown(host, error),
      onCompression: (host, change) => executor?.compressionSwitched(host, change),
      // The first look overlaps the start-up: what it found reaches the executor once there is one.
      onSample: (host, sample, changed) => (executor ? executor.pressureSampled(host, sample, changed) : sampledEarly.push([host, sample, changed])),
    });
    reach.then(
      (links) => {
        linked = links;
        reachEarly({});
      },
      () => undefined,
    );
    reachEarly({ machines });
  };
  let workload: Workload | undefined;
  try {
    const config = await loadMachinesConfig({ ...machineLoadOptions(opts), maxSilentTime: opts.maxSilentTime, buildTimeout: opts.timeout }, linkTo).catch((error: unknown) => {
      storeSettingKnown(undefined);
      throw error;
    });
    localStoreSetting = config.local.store;
    storeSettingKnown(localStoreSetting);
    // A Nix-format machine without a systems column builds the local system, which Nix has said by now.
    reachEarly({ machines: config.machines });
    const state = resolveState(opts, config);
    const output = new BuildObservers(opts);
    early.attach(output);
    for (const warning of config.warnings ?? []) output.warn(warning);
    workload = await loading;
    return await buildWith(workload, config, state, output, { links: await reach!, localStore, localInfos, sampledEarly, interruption, setExecutor: (e) => (executor = e) }, opts);
  } finally {
    stopListening();
    // The one place the builders' links close: after the report of a run, and for a run that stopped early (bad input, nothing to build).
    const reached = await reach?.catch(() => undefined);
    if (reached) {
      reached.channels.closeAll();
      await reached.ssh.closeAll();
    }
    if (workload) workload.localServe?.close();
    else void loading.then((w) => w.localServe?.close(), () => undefined);
    early.flushUnattached();
  }
}

/** The first SIGINT/SIGTERM, and what stops the run once it has begun. */
interface Interruption {
  signal?: TerminationSignal;
  stop?: (signal: TerminationSignal) => void;
}

/** A signal on every remote channel first: nix-store --serve stops its build at once, even where it would notice the closed channel only late. */
function closeLinks(links: BuilderLinks, signal: TerminationSignal): void {
  links.ssh.signalAll(signal === 'SIGTERM' ? 'TERM' : 'INT');
  links.channels.closeAll();
  void links.ssh.closeAll();
}

interface RunState {
  interruption: Interruption;
  links: BuilderLinks;
  localStore: LocalStoreAccess;
  localInfos: LocalPathInfos;
  sampledEarly: Array<[string, PressureSample, boolean]>;
  setExecutor: (executor: Executor) => void;
}

async function buildWith(workload: Workload, config: MachinesConfig, state: ReturnType<typeof resolveState>, output: BuildObservers, run: RunState, opts: BuildOptions): Promise<number> {
  const { links: reach, localStore, localInfos, sampledEarly } = run;
  const { ssh, channels, pressure } = reach;
  if (!workload.localPaths) throw new OffloadError('offload build needs Nix on this machine (nix-store was not found on PATH).', ExitCode.badInput);
  const { set } = workload;
  // Logged in early (or on the way): the question goes out as soon as it is known.
  const holdingsAsked = reach.connected ? askBuilderHoldings(reach.holdings, config.machines, missingOutputs(workload)) : undefined;
  const storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
  const settings = await substitutionSettings(opts);
  // Links follow the wanted outputs (drv^dev, -A pkg.dev, a flake's outputName); a bare .drv links out, as nix-build does.
  const links = opts.outLink === false ? [] : outLinks(set.roots.map((drvPath) => ({ drvPath, outputs: set.rootOutputs?.get(drvPath) })), set.drvs, opts.outLink, process.cwd());
  await checkOutLinksFree(links, opts.storeDir);
  const rules = opts.durations ? loadDurationRules(opts.durations) : defaultDurationRules;
  let history;
  try {
    history = await output.openHistory(state, opts, estimateKeys(workload.graph));
  } catch (error) {
    await output.close();
    throw error;
  }
  const start = performance.now();
  const now = () => (performance.now() - start) / 1000;
  const log = output.log;

  // Slots shared with other runners (this machine's, or the fleet's), keyed by where a builder really is.
  let leases;
  try {
    leases = await openSlotLeases(state, log);
  } catch (error) {
    await output.close();
    throw error;
  }
  const caches = openSubstituters(settings, storeDir, output.warn);
  const fetcher = caches
    ? new LocalFetcher({
        storeDir,
        // Nix fetches from the caches offload found reachable, in the same order, with the run's other settings.
        nixOptions: () => [...settings.nixOptions.filter(([name]) => name !== 'substituters' && name !== 'extra-substituters'), ['substituters', caches.liveUrls().join(' ')]],
      })
    : undefined;
  let executor: Executor | undefined;
  let interrupted = false;
  const shutdown = (signal: TerminationSignal) => {
    interrupted = true;
    executor?.interrupt();
    closeLinks(reach, signal);
  };
  run.interruption.stop = shutdown;
  // Interrupted before the run began: it begins interrupted.
  if (run.interruption.signal) shutdown(run.interruption.signal);
  const hosts = (transfers: boolean) => hostsFromConfig(config, transfers ? settings.maxSubstitutionJobs : undefined);
  const slots = new SlotGate({
    leases,
    keys: new Map([[LOCAL_HOST, `${LOCAL_HOST}:${hostname()}`], ...config.machines.map((m) => [m.hostName, `${m.address}:${m.port}`] as const)]),
    maxJobs: new Map(hosts(false).map((h) => [h.id, h.maxJobs])),
    log,
    priority: opts.slotPriority,
  });
  const known = new Map<string, Substitute | null>();
  const localValid = async (paths: string[]) => (await queryValidLocalPaths(paths, { store: config.local.store, ...(opts.storeDir ? { storeDir: opts.storeDir } : {}) })) ?? [];
  const substitutes = caches ? (paths: string[]) => caches.query(paths) : undefined;
  const records = new Map<string, JobRecord>();
  let result: LinkedResult | undefined;
  try {
    // Bad input (a derivation no machine fits) is refused before anything is sent to a builder (they may be logged in to).
    const first = await missingWork(workload, { ...(substitutes ? { substitutes } : {}), known, localValid });
    const firstJobs = jobsForWork(first, rules, history, transferEstimates(undefined));
    assertEveryJobFits(firstJobs, hosts(true));
    // Still before anything is built: a local store that would refuse what builders send back refuses the run now.
    const builders = hosts(false).filter((h) => !h.isLocal && !h.transferLane && firstJobs.some((j) => fits(h, j)));
    // A `nix-store --serve` starts now only on the builders the first jobs are planned on; on the others when a job asks.
    reach.warm(firstWaveHosts(firstJobs, hosts(firstJobs.some((j) => j.transfer))));
    const holdings = await startRun({ ssh, links: reach, machines: config.machines, channels, builders: builders.map((h) => h.id), holdings: holdingsAsked, missing: missingOutputs(workload), work: firstJobs.length > 0, uploads: { paths: firstUploads(firstJobs, set.drvs, workload.localPaths), localInfos }, ...(workload.localServe ? { localServe: workload.localServe } : {}), ...(opts.storeDir ? { storeDir: opts.storeDir } : {}), storeInProcess: opensStoreInProcess(config.local.store, nixStateDirWritable), log, onAccess: (access) => Object.assign(localStore, access) });
    let firstLook = reach.connected ? reach.connect() : undefined;
    let held: ReadonlyMap<string, string> = holdings.held;
    let localPaths: ReadonlySet<string> = workload.localPaths;
    const refused = new Set<string>();
    const estimates = transferEstimates(output.transferRate, (p) => holdings.narSize.get(p));
    const readLocalFiles = storeFilesReadable(config.local.store, storeDir, nixStateDirWritable);
    for (;;) {
      const work = await missingWork({ set, localPaths }, { ...(substitutes ? { substitutes } : {}), known, held, refused, localValid });
      caches?.reportUnsigned();
      assertInputAddressed([...[...work.graph.nodes.values()].map((n) => n.drv), ...set.roots.map((r) => set.drvs.get(r)!)]);
      const planned = jobsForWork(work, rules, history, estimates);
      // Where builders substitute for themselves, what only they need is fetched there (unless every output comes here anyway).
      const fetchOnBuilders = config.local.buildersUseSubstitutes && opts.copyBack !== 'all';
      const jobs = fetchOnBuilders ? markFetchesOnBuilders(planned, set.roots, hosts(false)) : planned;
      if (jobs.length === 0) {
        const nothing: RunResult = { records: [], outputs: localRootOutputs(set.roots, set.drvs, (p) => localPaths.has(p), set.rootOutputs), makespan: now(), interrupted: false };
        result = await withOutLinks(nothing, links);
        break;
      }
      executor = await startPass({ jobs, hosts: hosts(jobs.some((j) => j.transfer)), config, channels, login: (host) => reach.login(host), slots, pressure, log, now, output, opts, held, localPaths, drvs: set.drvs, roots: set.roots, rootOutputs: set.rootOutputs, fetcher, signsAfterBuild: (host) => localStore.signsAfterBuild.includes(host), readLocalFiles });
      run.setExecutor(executor);
      for (const early of sampledEarly.splice(0)) executor.pressureSampled(...early);
      await (firstLook ?? pressure.look());
      firstLook = undefined;
      // Interrupted while connecting: the pass starts nothing and reports its jobs as interrupted.
      if (interrupted) executor.interrupt();
      const passResult = await executor.run();
      for (const r of passResult.records) records.set(`${r.action ?? 'build'} ${r.drvPath}`, r);
      const merged = { ...passResult, records: [...records.values()], makespan: now() };
      if (!passResult.fellBack || passResult.interrupted || passResult.stuck || runFailed(passResult)) {
        // Linked while the local store children still hold the new outputs as temporary roots.
        result = await withOutLinks(merged, links);
        break;
      }
      result = merged;
      // Nix's fallback: what a cache or builder could not deliver is built, in a pass of its own.
      for (const p of passResult.fellBack) refused.add(p);
      held = executor.heldOnBuilders();
      localPaths = new Set(await localValid([...localPaths, ...jobs.flatMap((j) => j.transfer?.paths ?? []), ...missingOutputs({ set, localPaths })]));
    }
  } finally {
    // The builders' links are buildAction's to close (it made them), after the report.
    await leases.close();
    caches?.close();
    fetcher?.close();
  }
  return report(result, output);
}

/** A run's result, and the reason its links could not be made. */
type LinkedResult = RunResult & { linkError?: OffloadError };

/**
 * As nix-build: the links are made only when everything was built, and point
 * at outputs that are in the local store. A link that cannot be made fails
 * the run (exit 1) after the result is reported.
 */
async function withOutLinks(result: RunResult, links: readonly OutLink[]): Promise<LinkedResult> {
  if (links.length === 0 || result.interrupted || runFailed(result)) return result;
  const local = new Set(Object.values(result.outputs).flatMap((outputs) => Object.values(outputs)));
  const made = links.filter((link) => local.has(link.path));
  try {
    await addPermRoots(made);
    return { ...result, outLinks: made };
  } catch (error) {
    if (!(error instanceof OffloadError)) throw error;
    return { ...result, linkError: error };
  }
}

/** Output paths (or JSON) on stdout, summary and report via the observers, then the exit code. */
async function report(result: LinkedResult, output: BuildObservers): Promise<number> {
  await output.finish(result);
  if (result.interrupted) return ExitCode.interrupted;
  if (result.linkError) throw result.linkError;
  if (result.stuck) {
    throw new OffloadError(
      `cannot build ${result.stuck.jobs.length} derivation${result.stuck.jobs.length === 1 ? '' : 's'} (${result.stuck.jobs.slice(0, 3).join(', ')}${result.stuck.jobs.length > 3 ? ', …' : ''}): ${result.stuck.reason}.`,
      ExitCode.hostsUnusable,
    );
  }
  return runExitCode(result);
}
