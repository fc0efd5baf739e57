import type { Command } from 'commander';
import { loadMachinesConfig } from '../config/loadMachines.js';
import { defaultDurationRules } from '../schedule/durations.js';
import { loadDurationRules } from './durationRulesFile.js';
import { planBuild } from '../schedule/planBuild.js';
import { planToJson, planToText } from '../report/planReport.js';
import { addMachineOptions, addOutputOptions, terminalWidth, useColor, type MachineOptions, type OutputOptions } from './sharedOptions.js';
import { estimateKeys, hostsFromConfig, loadWorkload, missingOutputs, missingWork, type Workload } from './workload.js';
import { resolveState } from './sharedState.js';
import { cacheFilePath } from '../cache/cacheDatabase.js';
import type { MachinesConfig } from '../config/machine.js';
import { queryBuilderHoldings, type BuilderHoldings } from '../run/builderHoldings.js';
import { ChannelPool } from '../run/channelPool.js';
import { serveChannelOpener } from '../run/openChannel.js';
import { presenceOverSsh } from '../run/builderPresence.js';
import { DEFAULT_STORE_DIR } from '../storePath/storePath.js';
import { addSubstitutionOptions, substitutionSettings, type SubstitutionOptions } from './substitutionSettings.js';
import { openSubstituters, transferEstimates } from './substitution.js';
import { jobsForWork } from '../schedule/transferJobs.js';
import { markFetchesOnBuilders } from '../schedule/fetchOnBuilders.js';
import { queryValidLocalPaths } from '../store/localStore.js';
import { ExitCode } from '../errors/offloadError.js';
import { addExpressionOptions, expressionOptions, installablesHelp, type ExpressionCliOptions } from './expressionOptions.js';
import { addPlanOutputOptions, planHistory, writePlanSvg, type PlanOutputOptions } from './planOutputs.js';

export interface PlanOptions extends MachineOptions, OutputOptions, PlanOutputOptions, SubstitutionOptions, ExpressionCliOptions {
  fromJson?: string;
  storeDir?: string;
  durations?: string;
  assumeNothingBuilt?: boolean;
  askBuilders?: boolean;
}

export function registerPlanCommand(program: Command, run: (action: () => Promise<number>) => Promise<void>): void {
  const cmd = program
    .command('plan')
    .description('dry run: what is fetched from binary caches and which host builds the rest, when, and why (connects to builders only with --ask-builders)')
    .argument('[installables...]', 'what to plan: .nix files, flake references, .drv paths, output paths (default: ./default.nix)')
    .option('--from-json <file>', "read the DAG from `nix show-derivation -r` JSON ('-' = stdin) instead of .drv files; arguments are .drv paths in it")
    .option('--store-dir <dir>', 'Nix store directory holding the .drv files', '/nix/store')
    .option('--durations <file>', 'duration rules (format of durations.json) for what-if planning')
    .option('--assume-nothing-built', 'do not ask the local store which outputs already exist')
    .option('--ask-builders', 'also ask each builder (over SSH) which missing outputs it holds, as build does: those are copied, not built');
  addExpressionOptions(cmd);
  addMachineOptions(cmd);
  addSubstitutionOptions(cmd);
  addOutputOptions(cmd);
  addPlanOutputOptions(cmd);
  cmd.addHelpText(
    'after',
    `
${installablesHelp}

Examples:
  offload plan .#hello
  offload plan release.nix -A tests --argstr system x86_64-linux
  offload plan --machines machines.example.json --from-json fixtures/sample-dag.json
  offload plan /nix/store/…-hello-2.12.1.drv --max-jobs 0 --json | jq .makespan
  offload plan --from-json fixtures/sample-dag.json --svg plan.svg
  offload plan result.drv --no-history --durations durations.json   (what-if: rules only)
  nix show-derivation -r nixpkgs#firefox | offload plan --from-json - --durations durations.json`,
  );
  cmd.action((installables: string[], opts: PlanOptions) => run(() => planAction(installables, opts)));
}

export async function planAction(installables: string[], opts: PlanOptions): Promise<number> {
  const config = await loadMachinesConfig(machineLoadOptions(opts));
  const workload = await loadWorkload(installables, {
    fromJson: opts.fromJson,
    storeDir: opts.storeDir,
    askLocalStore: !opts.assumeNothingBuilt,
    localStore: config.local.store,
    expression: expressionOptions(opts),
  });
  const rules = opts.durations ? loadDurationRules(opts.durations) : defaultDurationRules;
  const warn = (message: string) => process.stderr.write(`offload: ${message}\n`);
  const history = await planHistory(resolveState(opts, config), opts, estimateKeys(workload.graph), warn);
  const settings = await substitutionSettings(opts);
  const caches = workload.localPaths ? openSubstituters(settings, opts.storeDir ?? '/nix/store', warn) : undefined;
  const holdings = opts.askBuilders && workload.localPaths ? await askBuilders(config, workload, opts) : undefined;
  let work;
  try {
    work = await missingWork(workload, {
      ...(holdings ? { held: holdings.held } : {}),
      ...(caches ? { substitutes: (paths: string[]) => caches.query(paths) } : {}),
      localValid: async (paths) => (await queryValidLocalPaths(paths, { store: config.local.store, ...(opts.storeDir ? { storeDir: opts.storeDir } : {}) })) ?? [],
    });
    caches?.reportUnsigned();
  } finally {
    caches?.close();
  }
  const planned = jobsForWork(work, rules, history.lookup, transferEstimates(history.transferRate, (p) => holdings?.narSize.get(p)));
  const hosts = hostsFromConfig(config, planned.some((j) => j.transfer) ? settings.maxSubstitutionJobs : undefined);
  const jobs = config.local.buildersUseSubstitutes ? markFetchesOnBuilders(planned, workload.set.roots, hosts) : planned;
  const plan = planBuild(jobs, hosts);
  const input = {
    learnedSpeeds: history.learnedSpeeds,
    plan,
    jobs: new Map(jobs.map((j) => [j.id, j])),
    hosts,
    alreadyBuilt: work.valid,
    held: work.held,
    ...(caches ? { substituters: caches.urls } : {}),
    machinesSource: config.source,
  };
  if (opts.json) process.stdout.write(`${JSON.stringify(planToJson(input), null, 2)}\n`);
  else process.stdout.write(`${planToText(input, { color: useColor(opts, process.stdout), width: terminalWidth(process.stdout) })}\n`);
  if (opts.svg !== undefined) await writePlanSvg(opts.svg, input);
  return ExitCode.ok;
}

/** The same question build asks at its start: what each builder has on disk, then Nix about those. */
async function askBuilders(config: MachinesConfig, workload: Workload, opts: PlanOptions): Promise<BuilderHoldings> {
  // Loaded when needed: ssh2 is a tenth of what every start would load (see scripts/bundle.mjs).
  const { SshPool } = await import('../remote/sshPool.js');
  const ssh = new SshPool({ connectTimeoutMs: 10_000, keepaliveIntervalMs: 5_000, keepaliveCountMax: 3, warn: (m) => process.stderr.write(`offload: ${m}\n`) });
  const channels = new ChannelPool(serveChannelOpener(ssh, config.machines, opts.storeDir ? { storeDir: opts.storeDir } : {}));
  try {
    const present = presenceOverSsh(ssh, config.machines, opts.storeDir ?? DEFAULT_STORE_DIR);
    return await queryBuilderHoldings({ channels, present }, config.machines.map((m) => m.hostName), missingOutputs(workload));
  } finally {
    channels.closeAll();
    await ssh.closeAll();
  }
}

/** Nix's machine defaults, kept between runs beside offload's other per-user files. */
const MACHINE_DEFAULTS_FILE = 'nix-machine-defaults.json';

export function machineLoadOptions(opts: MachineOptions) {
  return {
    machinesFile: opts.machines,
    builders: opts.builders,
    sshConfigFile: opts.sshConfig,
    maxJobs: opts.maxJobs,
    hosts: opts.hosts,
    excludeHosts: opts.excludeHosts,
    buildersUseSubstitutes: opts.buildersUseSubstitutes,
    env: process.env,
    machineDefaultsCache: cacheFilePath(MACHINE_DEFAULTS_FILE),
  };
}
