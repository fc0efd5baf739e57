import { Option, type Command } from 'commander';
import { cpus } from 'node:os';
import { ExitCode, OffloadError } from '../errors/offloadError.js';

/** Options every command that reads machines accepts. */
export interface MachineOptions {
  machines?: string;
  builders?: string;
  sshConfig?: string;
  maxJobs?: number;
  hosts?: string[];
  excludeHosts?: string[];
  buildersUseSubstitutes?: boolean;
}

export interface OutputOptions {
  json?: boolean;
  color: boolean;
  debug?: boolean;
}

export function addMachineOptions(cmd: Command): Command {
  return cmd
    .option('--machines <file>', "machines file: offload JSON or Nix machines format (default: $OFFLOAD_MACHINES, ~/.config/offload/machines.json, else Nix's builders setting)")
    .option('--builders <spec>', "machines in Nix's --builders syntax ('ssh://host sys key jobs speed feats mandatory hostkey; …' or @file)")
    .option('--ssh-config <file>', 'resolve host aliases from this ssh_config instead of ~/.ssh/config and /etc/ssh/ssh_config')
    .option('-j, --max-jobs <n>', "local build slots, or 'auto' for one per CPU (0 = never build locally, except builtin: derivations; default: Nix's max-jobs)", parseMaxJobs)
    .option('--hosts <names>', 'use only these machines (comma-separated hostNames)', parseList)
    .option('--exclude-hosts <names>', 'do not use these machines (comma-separated hostNames)', parseList)
    .option('--builders-use-substitutes', "builders fetch inputs from their own substituters before receiving them from here (default: Nix's builders-use-substitutes)");
}

export function addOutputOptions(cmd: Command): Command {
  return cmd
    .option('--json', 'print one JSON object on stdout (for scripts)')
    .addOption(new Option('--no-color', 'no ANSI colours (also when NO_COLOR is set)'))
    .option('--debug', 'show stack traces of errors');
}

export function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new OffloadError(`expected a whole number ≥ 0, got "${value}"`, ExitCode.badInput);
  return n;
}

/** `-j`: a count, or `auto` for the number of online CPUs, as Nix reads max-jobs. */
export function parseMaxJobs(value: string): number {
  return value === 'auto' ? Math.max(1, cpus().length) : parseCount(value);
}

/** Nix's --timeout and --max-silent-time take whole seconds; 0 means no limit. */
export function parseWholeSeconds(value: string): number {
  if (!/^\d+$/.test(value)) throw new OffloadError(`expected a whole number of seconds ≥ 0, got "${value}"`, ExitCode.badInput);
  return Number(value);
}

export function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new OffloadError(`expected a number of seconds > 0, got "${value}"`, ExitCode.badInput);
  return n;
}

export function parseList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function useColor(opts: { color?: boolean }, stream: NodeJS.WriteStream): boolean {
  return opts.color !== false && !process.env.NO_COLOR && stream.isTTY === true;
}

/** The window's width when `stream` is a terminal; undefined for pipes and files, which get whole lines. */
export function terminalWidth(stream: NodeJS.WriteStream): number | undefined {
  return stream.isTTY === true && stream.columns > 0 ? stream.columns : undefined;
}
