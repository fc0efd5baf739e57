import { Option, type Command } from 'commander';
import { KeyFileError } from '../config/errors.js';
import { checkKeyFile } from '../config/keyFile.js';
import { loadMachinesConfig } from '../config/loadMachines.js';
import type { Machine } from '../config/machine.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { readDaemonNixConfig } from '../config/nixSettings/daemonSettings.js';
import type { LocalTrust } from '../remote/trustFindings.js';
import { askLocalStore, currentUser } from '../run/copyBackCheck.js';
import { expectedHostKey, knownHostsFilesFor } from '../remote/expectedHostKey.js';
import { loadKnownHosts } from '../remote/knownHosts.js';
import { machinesCheckToJson, machinesCheckToText, machinesListToJson, machinesListToText, type MachineListing } from '../report/machinesReport.js';
import { machineLoadOptions } from './planCommand.js';
import { addMachineOptions, addOutputOptions, terminalWidth, useColor, type MachineOptions, type OutputOptions } from './sharedOptions.js';

export interface MachinesOptions extends MachineOptions, OutputOptions {}

/** Where the command writes; the CLI passes process.stdout, tests a collector. */
export interface Output {
  write(text: string): void;
  isTTY?: boolean;
}

export function registerMachinesCommand(program: Command, run: (action: () => Promise<number>) => Promise<void>): void {
  const cmd = program
    .command('machines')
    .description('list the configured machines as offload sees them (after ssh_config and host selection; never connects)')
    // Options after `check` belong to check (needs positional options on the root program too; see withParentOptions).
    .enablePositionalOptions();
  addMachineOptions(cmd);
  addOutputOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  offload machines --machines machines.json
  offload machines --builders @/etc/nix/machines --json | jq '.machines[].hostKey'`,
  );
  cmd.action((opts: MachinesOptions) => run(() => machinesAction(opts, process.stdout)));
  registerCheckCommand(cmd, run);
}

function registerCheckCommand(machines: Command, run: (action: () => Promise<number>) => Promise<void>): void {
  const cmd = machines
    .command('check')
    .description('connect to every machine (in parallel) and compare what its Nix really offers with what the machines file claims')
    .addOption(
      new Option('--timeout <duration>', 'give each machine this long to answer everything, e.g. 30s, 1500ms')
        .argParser(parseTimeout)
        .default(DEFAULT_TIMEOUT_MS, '10s'),
    );
  addMachineOptions(cmd);
  addOutputOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Reports per machine: reachable (connect time), host key (pinned / known_hosts / accepted), Nix version,
serve protocol version, the systems and system-features its Nix really has against the claims, load per CPU
and free store space, and a verdict: ok, warning (some builds would fail there) or unusable.
Exit code ${ExitCode.hostsUnusable} when any machine is unusable, ${ExitCode.ok} otherwise.

Examples:
  offload machines check --machines machines.json
  offload machines check --hosts kana --timeout 30s --json | jq '.machines[0].findings'`,
  );
  cmd.action(() => run(() => machinesCheckAction(withParentOptions<MachinesCheckOptions>(cmd), process.stdout)));
}

/**
 * `machines` and `machines check` share their options, and commander hands
 * an option to the first command that knows it (the parent, unless the root
 * program enables positional options): an option the user gave to either
 * counts, the subcommand's winning when both have one.
 */
export function withParentOptions<T>(cmd: Command): T {
  const merged: Record<string, unknown> = { ...cmd.opts() };
  const parent = cmd.parent;
  if (!parent) return merged as T;
  const given = (c: Command, key: string) => ['cli', 'env'].includes(c.getOptionValueSource(key) ?? '');
  for (const [key, value] of Object.entries(parent.opts())) {
    if (given(parent, key) && !given(cmd, key)) merged[key] = value;
  }
  return merged as T;
}

export interface MachinesCheckOptions extends MachinesOptions {
  timeout: number;
  /** known_hosts files for machines without their own; default ssh's. */
  knownHostsFiles?: string[];
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** `10s`, `1500ms`, `1m`, or plain seconds. */
export function parseTimeout(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };
  const ms = match ? Number(match[1]) * unit[match[2] ?? 's']! : NaN;
  if (!(ms > 0)) throw new OffloadError(`--timeout: expected a duration such as 10s or 1500ms, got "${value}"`, ExitCode.badInput);
  return Math.round(ms);
}

export async function machinesCheckAction(opts: MachinesCheckOptions, out: Output): Promise<number> {
  const config = await loadMachinesConfig(machineLoadOptions(opts));
  for (const warning of config.warnings ?? []) process.stderr.write(`offload: warning: ${warning}\n`);
  const localTrust = await localStoreTrust();
  // Loaded when needed: ssh2 is a tenth of what every start would load (see scripts/bundle.mjs).
  const { checkBuilders } = await import('../remote/builderProbe.js');
  const checks = await checkBuilders(config.machines, {
    timeoutMs: opts.timeout,
    localTrust,
    ...(opts.knownHostsFiles !== undefined && { knownHostsFiles: opts.knownHostsFiles }),
  });
  const input = { source: config.source, timeoutMs: opts.timeout, checks, localTrust };
  if (opts.json) out.write(`${JSON.stringify(machinesCheckToJson(input), null, 2)}\n`);
  else out.write(`${machinesCheckToText(input, { color: useColor(opts, out as NodeJS.WriteStream), width: terminalWidth(out as NodeJS.WriteStream) })}\n`);
  return checks.some((c) => c.verdict === 'unusable') ? ExitCode.hostsUnusable : ExitCode.ok;
}

/** Whether the local store takes unsigned paths from this user, and the keys its daemon trusts. */
async function localStoreTrust(): Promise<LocalTrust> {
  const [unsignedImports, daemon] = await Promise.all([
    askLocalStore(undefined, (line) => process.stderr.write(`${line}\n`)),
    readDaemonNixConfig(),
  ]);
  return { user: currentUser(), trustedPublicKeys: daemon.settings.trustedPublicKeys.value, ...(unsignedImports !== undefined && { unsignedImports }) };
}

export async function machinesAction(opts: MachinesOptions, out: Output): Promise<number> {
  const config = await loadMachinesConfig(machineLoadOptions(opts));
  const machines = config.machines.map((m) => listing(m));
  const input = { source: config.source, warnings: config.warnings ?? [], machines, local: config.local };
  if (opts.json) out.write(`${JSON.stringify(machinesListToJson(input), null, 2)}\n`);
  else out.write(`${machinesListToText(input, { color: useColor(opts, out as NodeJS.WriteStream), width: terminalWidth(out as NodeJS.WriteStream) })}\n`);
  return ExitCode.ok;
}

/** Local facts only: key file metadata and the expected host key; nothing is sent anywhere. */
function listing(machine: Machine): MachineListing {
  const files = knownHostsFilesFor(machine);
  const hostKey = expectedHostKey(machine, loadKnownHosts(files), files);
  const keyFileProblem = machine.sshKey === undefined ? undefined : keyProblem(machine.sshKey, machine.hostName);
  return { machine, hostKey, ...(keyFileProblem !== undefined && { keyFileProblem }) };
}

function keyProblem(path: string, hostName: string): string | undefined {
  try {
    checkKeyFile(path, hostName);
    return undefined;
  } catch (error) {
    if (error instanceof KeyFileError) return error.message;
    throw error;
  }
}
