import { Command, CommanderError } from 'commander';
import { readFile } from 'node:fs/promises';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { dropOutputForClosedPipes } from './closedPipes.js';
import { exitCodeHelp } from './exitCodes.js';
import { joinTwoWordOptions } from './twoWordOptions.js';
import { registerBuildCommand } from './buildCommand.js';
import { registerCompletionCommand } from './completion.js';
import { registerHistoryCommand } from './historyCommand.js';
import { registerMachinesCommand } from './machinesCommand.js';
import { registerPlanCommand } from './planCommand.js';

/**
 * Runs the CLI and returns the exit code. Errors a user can cause arrive as
 * OffloadError and are printed as one sentence; anything else is a bug.
 */
export async function main(argv: string[]): Promise<number> {
  dropOutputForClosedPipes(process.stdout, process.stderr);
  let exitCode: number = ExitCode.ok;
  const debug = argv.includes('--debug');
  const run = async (action: () => Promise<number>) => {
    exitCode = await action();
  };
  const program = new Command('offload')
    .description('Spread Nix builds over SSH builders: critical path first, each derivation on the machine that finishes it soonest.')
    .version(await packageVersion())
    .exitOverride()
    .showSuggestionAfterError()
    // Options after a subcommand belong to it (`machines check --json`).
    .enablePositionalOptions()
    .addHelpText('after', () => `\n${exitCodeHelp()}`);
  registerPlanCommand(program, run);
  registerBuildCommand(program, run);
  registerMachinesCommand(program, run);
  registerHistoryCommand(program, run);
  // Last: the completion script is generated from every command above.
  registerCompletionCommand(program);
  try {
    await program.parseAsync(joinTwoWordOptions(argv));
    return exitCode;
  } catch (error) {
    return reportError(error, debug);
  }
}

function reportError(error: unknown, debug: boolean): number {
  if (error instanceof CommanderError) {
    // Commander already printed its message (or the help / version text).
    return error.exitCode === 0 ? ExitCode.ok : ExitCode.badInput;
  }
  if (error instanceof OffloadError) {
    process.stderr.write(`offload: ${error.message}\n`);
    if (debug) process.stderr.write(`${error.stack}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`offload: internal error: ${message}${debug ? '' : ' (run with --debug for the stack trace)'}\n`);
  if (debug && error instanceof Error) process.stderr.write(`${error.stack}\n`);
  return ExitCode.internal;
}

async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
