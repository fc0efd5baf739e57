import { SshConfigError } from './errors.js';
import type { SshOption } from './sshConfig.js';

/**
 * NIX_SSHOPTS: the extra ssh arguments Nix adds to every connection to a
 * builder. offload reads them the way ssh would: `-o Keyword=value`,
 * `-p`, `-l`, `-i`, `-J` and `-C` become command-line options of each
 * builder's ssh_config resolution (so they win over the files, as on ssh's
 * command line), `-F` names the config file. Flags that only make sense for
 * ssh's own process (-v, -M, -L, ...) are returned to be warned about.
 */
export interface NixSshOpts {
  /** In the order given (the first value of a keyword wins, as in ssh). */
  options: SshOption[];
  /** `-F FILE`. */
  configFile?: string;
  /** Flags offload does not use, as given (`-v`, `-L 8080:x:80`). */
  ignored: string[];
}

const FROM = 'NIX_SSHOPTS';

/** ssh's flags that take an argument (OpenSSH 9 getopt string). */
const WITH_ARGUMENT = new Set([...'bceilmopBDEFIJLOPQRSWw']);
/** ssh's flags without one. */
const WITHOUT_ARGUMENT = new Set([...'1246afgknqstvxyACGKMNTVXY']);
/** Flags for what offload always does anyway: no X11 or agent forwarding, no terminal, no stdin, quiet. */
const ALREADY_SO = new Set([...'12xaTnq']);
/** Flags that are ssh_config options by another name. */
const AS_OPTION: Record<string, (argument: string) => [string, string]> = {
  p: (port) => ['Port', port],
  l: (user) => ['User', user],
  i: (file) => ['IdentityFile', file],
  J: (hops) => ['ProxyJump', hops],
  C: () => ['Compression', 'yes'],
};

export function parseNixSshOpts(text: string | undefined): NixSshOpts {
  const result: NixSshOpts = { options: [], ignored: [] };
  const args = splitShellWords(text ?? '');
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    if (!arg.startsWith('-') || arg === '-') throw new SshConfigError(`${FROM}: "${arg}" is not an ssh option (a host name or command cannot be given there)`);
    // getopt: a cluster of flags, the first that takes an argument ends it.
    for (let at = 1; at < arg.length; at++) {
      const flag = arg[at]!;
      if (WITHOUT_ARGUMENT.has(flag)) {
        if (AS_OPTION[flag]) add(result, ...AS_OPTION[flag](''));
        else if (!ALREADY_SO.has(flag)) result.ignored.push(`-${flag}`);
        continue;
      }
      if (!WITH_ARGUMENT.has(flag)) throw new SshConfigError(`${FROM}: "-${flag}" is not an ssh option`);
      let argument = arg.slice(at + 1);
      if (argument === '') {
        index++;
        if (index >= args.length) throw new SshConfigError(`${FROM}: "-${flag}" needs an argument`);
        argument = args[index]!;
      }
      if (flag === 'o') add(result, ...configLine(argument));
      else if (flag === 'F') result.configFile ??= argument;
      else if (AS_OPTION[flag]) add(result, ...AS_OPTION[flag](argument));
      else result.ignored.push(`-${flag} ${argument}`);
      break;
    }
  }
  return result;
}

function add(result: NixSshOpts, keyword: string, value: string): void {
  result.options.push({ keyword, value, from: FROM });
}

/** `-o` takes one ssh_config line: `Keyword=value` or `Keyword value`. */
function configLine(text: string): [string, string] {
  const match = /^\s*([A-Za-z0-9]+)\s*(?:=\s*|\s+)(\S.*?)\s*$/.exec(text);
  if (!match) throw new SshConfigError(`${FROM}: -o "${text}" is not Keyword=value`);
  const keyword = match[1]!;
  if (/^(host|match|include)$/i.test(keyword)) throw new SshConfigError(`${FROM}: -o ${keyword} is not allowed on the command line (ssh refuses it too)`);
  return [keyword, match[2]!.replace(/^"(.*)"$/, '$1')];
}

/**
 * Words as a POSIX shell splits them, without expansion (what Nix's
 * shellSplitString does): whitespace separates, '…' is literal, "…" allows
 * \\ \" \$ \` escapes, a backslash outside quotes escapes the next character.
 */
export function splitShellWords(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: "'" | '"' | undefined;
  for (let at = 0; at < text.length; at++) {
    const char = text[at]!;
    if (quote === "'") {
      if (char === "'") quote = undefined;
      else word = (word ?? '') + char;
    } else if (quote === '"') {
      if (char === '"') quote = undefined;
      else if (char === '\\' && at + 1 < text.length && '\\"$`\n'.includes(text[at + 1]!)) word = (word ?? '') + text[++at];
      else word = (word ?? '') + char;
    } else if (/\s/.test(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (char === "'" || char === '"') {
      quote = char;
      word ??= '';
    } else if (char === '\\') {
      if (at + 1 >= text.length) throw new SshConfigError(`${FROM}: ends with a lone backslash`);
      word = (word ?? '') + text[++at];
    } else {
      word = (word ?? '') + char;
    }
  }
  if (quote !== undefined) throw new SshConfigError(`${FROM}: unterminated ${quote === "'" ? 'single' : 'double'} quote in ${JSON.stringify(text)}`);
  if (word !== undefined) words.push(word);
  return words;
}
