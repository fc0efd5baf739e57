import type { Command } from 'commander';
import { loadMachinesConfig } from '../config/loadMachines.js';
import { defaultDurationRules, loadDurationRules } from '../schedule/durations.js';
import { planBuild } from '../schedule/planBuild.js';
import { planToJson, planToText } from '../report/planReport.js';
import { addMachineOptions, addOutputOptions, terminalWidth, useColor, type MachineOptions, type OutputOptions } from './sharedOptions.js';
import { hostsFromConfig, jobsFromGraph, loadWorkload } from './workload.js';
import { ExitCode } from '../errors/offloadError.js';
import { addPlanOutputOptions, planHistory, writePlanSvg, type PlanOutputOptions } from './planOutputs.js';

export interface PlanOptions extends MachineOptions, OutputOptions, PlanOutputOptions {
  fromJson?: string;
  storeDir?: string;
  durations?: string;
  assumeNothingBuilt?: boolean;
}

export function registerPlanCommand(program: Command, run: (action: () => Promise<number>) => Promise<void>): void {
  const cmd = program
    .command('plan')
    .description('dry run: which host builds each derivation, when, and why (never connects anywhere)')
    .argument('[drvs...]', '.drv files to plan (their whole closure is loaded)')
    .option('--from-json <file>', "read the DAG from `nix show-derivation -r` JSON ('-' = stdin) instead of .drv files")
    .option('--store-dir <dir>', 'Nix store directory holding the .drv files', '/nix/store')
    .option('--durations <file>', 'duration rules (format of durations.json) for what-if planning')
    .option('--assume-nothing-built', 'do not ask the local store which outputs already exist');
  addMachineOptions(cmd);
  addOutputOptions(cmd);
  addPlanOutputOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  offload plan --machines machines.example.json --from-json fixtures/sample-dag.json
  offload plan /nix/store/…-hello-2.12.1.drv --max-jobs 0 --json | jq .makespan
  offload plan --from-json fixtures/sample-dag.json --svg plan.svg
  offload plan result.drv --no-history --durations durations.json   (what-if: rules only)
  nix show-derivation -r nixpkgs#firefox | offload plan --from-json - --durations durations.json`,
  );
  cmd.action((drvs: string[], opts: PlanOptions) => run(() => planAction(drvs, opts)));
}

export async function planAction(drvs: string[], opts: PlanOptions): Promise<number> {
  const config = await loadMachinesConfig(machineLoadOptions(opts));
  const workload = await loadWorkload(drvs, {
    fromJson: opts.fromJson,
    storeDir: opts.storeDir,
    askLocalStore: !opts.assumeNothingBuilt,
  });
  const rules = opts.durations ? loadDurationRules(opts.durations) : defaultDurationRules;
  const history = planHistory(opts, (message) => process.stderr.write(`offload: ${message}\n`));
  const jobs = jobsFromGraph(workload.graph, rules, history.lookup);
  history.close();
  const hosts = hostsFromConfig(config);
  const plan = planBuild(jobs, hosts);
  const input = {
    learnedSpeeds: history.learnedSpeeds,
    plan,
    jobs: new Map(jobs.map((j) => [j.id, j])),
    hosts,
    alreadyBuilt: workload.graph.alreadyValid,
    machinesSource: config.source,
  };
  if (opts.json) process.stdout.write(`${JSON.stringify(planToJson(input), null, 2)}\n`);
  else process.stdout.write(`${planToText(input, { color: useColor(opts, process.stdout), width: terminalWidth(process.stdout) })}\n`);
  if (opts.svg !== undefined) await writePlanSvg(opts.svg, input);
  return ExitCode.ok;
}

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
  };
}
