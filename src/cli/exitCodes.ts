import wrapAnsi from 'wrap-ansi';
import { ExitCode } from '../errors/offloadError.js';

/**
 * Every exit code offload returns, as nix-build's for build failures. The
 * one source of both `--help`'s table and the README's: `npx tsx
 * scripts/readme-exit-codes.ts` rewrites the README's, and
 * test/unit/exitCodes.test.ts fails while it differs. Meanings are Markdown
 * (code spans); `--help` shows them without the backticks.
 */
export const exitCodeTable: ReadonlyArray<{ code: string; meaning: string }> = [
  { code: `${ExitCode.ok}`, meaning: 'success (plan computed / everything built)' },
  {
    code: `${ExitCode.failed}`,
    meaning:
      "any other failure: a derivation fits no machine (the message lists each host's reason), machines unusable (unreachable, wrong or unknown host key, authentication), retries used up, a copy that failed",
  },
  { code: `${ExitCode.badInput}`, meaning: 'bad input: usage, machines file, Nix settings, `.drv` file, key file; shared state (`--state`) unreachable' },
  { code: `${ExitCode.buildFailed}`, meaning: 'a derivation failed to build (its dependents were skipped)' },
  { code: `${ExitCode.buildFailed + 1}`, meaning: "a build timed out (`--timeout`, `--max-silent-time`, or nix.conf's `timeout` / `max-silent-time`)" },
  { code: `${ExitCode.buildFailed + 2}`, meaning: "a fixed-output derivation's hash did not match" },
  {
    code: `${ExitCode.buildFailed} + flags`,
    meaning: `several of these at once, as Nix adds them: +1 timeout, +2 hash mismatch, +4 not deterministic (${ExitCode.buildFailed + 3} = a timeout and a hash mismatch)`,
  },
  { code: `${ExitCode.internal}`, meaning: 'internal error in offload (a bug; please report it; `--debug` shows the stack)' },
  { code: `${ExitCode.interrupted}`, meaning: 'interrupted (SIGINT / SIGTERM)' },
  { code: "Nix's", meaning: "evaluating what was named failed: Nix's message, then offload exits with Nix's exit code; nothing was built" },
];

const HELP_WIDTH = 80;

/**
 * The table every command's `--help` shows. Made when help is shown, not at
 * every start: wrapping measures each character's width, whose tables cost
 * some 50 ms to build.
 */
export function exitCodeHelp(): string {
  const codeWidth = Math.max(...exitCodeTable.map((row) => row.code.length)) + 2;
  const indent = ' '.repeat(2 + codeWidth);
  const rows = exitCodeTable.map(({ code, meaning }) => {
    const text = wrapAnsi(meaning.replaceAll('`', ''), HELP_WIDTH - indent.length, { hard: true }).replaceAll('\n', `\n${indent}`);
    return `  ${code.padEnd(codeWidth)}${text}`;
  });
  return ['Exit codes (as nix-build\'s):', ...rows].join('\n');
}

/** The README's table, as Markdown. */
export function exitCodeMarkdown(): string {
  return ['| code | meaning |', '| ---: | --- |', ...exitCodeTable.map(({ code, meaning }) => `| ${code} | ${meaning} |`)].join('\n');
}
