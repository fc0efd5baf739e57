import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * Nix's options that take two words: `--option NAME VALUE`, and nix-build's
 * `--arg NAME EXPR` and `--argstr NAME VALUE`. Commander options take one.
 */
const TWO_WORD_OPTIONS = new Set(['--option', '--arg', '--argstr']);

/**
 * Joins each two-word option into `NAME=VALUE` before commander sees argv, so
 * Nix's syntax works unchanged (a name never holds `=`: Nix setting names
 * and Nix identifiers cannot). A word that already holds `=` is taken as
 * joined. Nothing after `--` is touched.
 */
export function joinTwoWordOptions(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') return [...out, ...argv.slice(i)];
    if (TWO_WORD_OPTIONS.has(word) && i + 2 < argv.length && !argv[i + 1]!.includes('=')) {
      out.push(word, `${argv[i + 1]}=${argv[i + 2]}`);
      i += 2;
    } else out.push(word);
  }
  return out;
}

/** Splits what joinTwoWordOptions joined back into the name and its value. */
export function splitTwoWords(option: string, second: string) {
  return (text: string): [string, string] => {
    const eq = text.indexOf('=');
    if (eq <= 0) throw new OffloadError(`${option} ${JSON.stringify(text)}: expected ${option} NAME ${second}.`, ExitCode.badInput);
    return [text.slice(0, eq), text.slice(eq + 1)];
  };
}
