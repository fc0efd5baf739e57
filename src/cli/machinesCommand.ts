import type { Command } from 'commander';
import { KeyFileError } from '../config/errors.js';
import { checkKeyFile } from '../config/keyFile.js';
import { loadMachinesConfig } from '../config/loadMachines.js';
import type { Machine } from '../config/machine.js';
import { ExitCode } from '../errors/offloadError.js';
import { expectedHostKey, knownHostsFilesFor } from '../remote/expectedHostKey.js';
import { loadKnownHosts } from '../remote/knownHosts.js';
import { machinesListToJson, machinesListToText, type MachineListing } from '../report/machinesReport.js';
import { machineLoadOptions } from './planCommand.js';
import { addMachineOptions, addOutputOptions, useColor, type MachineOptions, type OutputOptions } from './sharedOptions.js';

export interface MachinesOptions extends MachineOptions, OutputOptions {}

/** Where the command writes; the CLI passes process.stdout, tests a collector. */
export interface Output {
  write(text: string): void;
  isTTY?: boolean;
}

export function registerMachinesCommand(program: Command, run: (action: () => Promise<number>) => Promise<void>): void {
  const cmd = program
    .command('machines')
    .description('list the configured machines as offload sees them (after ssh_config and host selection; never connects)');
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
}

export async function machinesAction(opts: MachinesOptions, out: Output): Promise<number> {
  const config = await loadMachinesConfig(machineLoadOptions(opts));
  const machines = await Promise.all(config.machines.map((m) => listing(m)));
  const input = { source: config.source, warnings: config.warnings ?? [], machines, local: config.local };
  if (opts.json) out.write(`${JSON.stringify(machinesListToJson(input), null, 2)}\n`);
  else out.write(`${machinesListToText(input, { color: useColor(opts, out as NodeJS.WriteStream) })}\n`);
  return ExitCode.ok;
}

/** Local facts only: key file metadata and the expected host key; nothing is sent anywhere. */
async function listing(machine: Machine): Promise<MachineListing> {
  const files = knownHostsFilesFor(machine);
  const hostKey = expectedHostKey(machine, await loadKnownHosts(files), files);
  const keyFileProblem = machine.sshKey === undefined ? undefined : await keyProblem(machine.sshKey, machine.hostName);
  return { machine, hostKey, ...(keyFileProblem !== undefined && { keyFileProblem }) };
}

async function keyProblem(path: string, hostName: string): Promise<string | undefined> {
  try {
    await checkKeyFile(path, hostName);
    return undefined;
  } catch (error) {
    if (error instanceof KeyFileError) return error.message;
    throw error;
  }
}
