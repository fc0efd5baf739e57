import { Argument, type Command } from 'commander';
import { ExitCode, OffloadError } from '../errors/offloadError.js';

/**
 * `offload completion bash|zsh|fish`: shell completion generated from the
 * commander program itself (its commands, options, choices and arguments), so
 * it never drifts from the real CLI. All three scripts share one idea: walk
 * the words typed so far to find the command path (`history import-nom`),
 * skipping option values, then offer that path's subcommands, options, option
 * choices or files.
 */

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

interface OptionSpec {
  /** `-j`, `--max-jobs` */
  flags: string[];
  description: string;
  takesValue: boolean;
  choices?: string[];
}

interface CommandSpec {
  /** Space-separated names from the root: '' for the program, 'history import-nom'. */
  path: string;
  description: string;
  subcommands: { name: string; description: string }[];
  options: OptionSpec[];
  /** Whether positional arguments exist, and their choices if fixed. */
  args: { choices?: string[] } | undefined;
}

export function registerCompletionCommand(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script (bash, zsh or fish)')
    .addArgument(new Argument('<shell>', 'the shell to complete for').choices(SHELLS))
    .addHelpText(
      'after',
      `
Install:
  bash: offload completion bash > ~/.local/share/bash-completion/completions/offload
  zsh:  offload completion zsh > "\${fpath[1]}/_offload"   (or: source <(offload completion zsh))
  fish: offload completion fish > ~/.config/fish/completions/offload.fish`,
    )
    .action((shell: Shell) => {
      process.stdout.write(completionScript(program, shell));
    });
}

export function completionScript(program: Command, shell: Shell): string {
  const specs = commandSpecs(program);
  const name = safeWord(program.name());
  switch (shell) {
    case 'bash':
      return bashScript(name, specs);
    case 'zsh':
      return zshScript(name, specs);
    case 'fish':
      return fishScript(name, specs);
    default:
      throw new OffloadError(`unknown shell "${String(shell)}": expected one of ${SHELLS.join(', ')}`, ExitCode.badInput);
  }
}

/** Every command reachable from the program, depth first, with what completion needs. */
export function commandSpecs(program: Command): CommandSpec[] {
  const out: CommandSpec[] = [];
  const visit = (cmd: Command, path: string) => {
    const help = cmd.createHelp();
    const subs = help.visibleCommands(cmd);
    const args = help.visibleArguments(cmd).length > 0 ? cmd.registeredArguments : [];
    const fixed = args.length === 1 ? args[0]!.argChoices : undefined;
    out.push({
      path,
      description: cmd.description(),
      subcommands: subs.flatMap((s) => [s.name(), ...s.aliases()].map((n) => ({ name: safeWord(n), description: s.description() }))),
      options: help.visibleOptions(cmd).map((o) => ({
        flags: [o.short, o.long].filter((f): f is string => f !== undefined).map(safeWord),
        description: o.description,
        takesValue: o.required || o.optional,
        ...(o.argChoices ? { choices: o.argChoices.map(safeWord) } : {}),
      })),
      args: args.length > 0 ? (fixed ? { choices: fixed.map(safeWord) } : {}) : undefined,
    });
    for (const s of subs) if (!isImplicitHelp(s, cmd)) visit(s, path === '' ? s.name() : `${path} ${s.name()}`);
  };
  visit(program, '');
  return out;
}

/** Commander's implicit `help [command]` needs no completion of its own beyond being listed. */
function isImplicitHelp(sub: Command, parent: Command): boolean {
  return sub.name() === 'help' && !parent.commands.includes(sub);
}

/** Names go into shell code unquoted in places: allow only what a flag or command name needs. */
function safeWord(word: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.:+-]*$|^-{1,2}[A-Za-z0-9][A-Za-z0-9_-]*$/.test(word)) {
    throw new OffloadError(`cannot generate completion: "${word}" is not a plain command, option or choice name`, ExitCode.badInput);
  }
  return word;
}

const flagsOf = (spec: CommandSpec) => spec.options.flatMap((o) => o.flags);
const valueFlagsOf = (spec: CommandSpec) => spec.options.filter((o) => o.takesValue).flatMap((o) => o.flags);

/** `case` arms keyed by command path, shared by bash and zsh (same syntax). */
function caseFunction(fn: string, specs: CommandSpec[], body: (s: CommandSpec) => string): string {
  const arms = specs.map((s) => `    ${shQuote(s.path)}) ${body(s)} ;;`);
  return [`${fn}() {`, '  case "$1" in', ...arms, '  esac', '}'].join('\n');
}

function choiceArms(specs: CommandSpec[]): string[] {
  const arms: string[] = [];
  for (const s of specs) {
    for (const o of s.options) {
      if (!o.choices) continue;
      for (const f of o.flags) arms.push(`    ${shQuote(`${s.path}|${f}`)}) echo ${shQuote(o.choices.join(' '))} ;;`);
    }
    if (s.args?.choices) arms.push(`    ${shQuote(`${s.path}|`)}) echo ${shQuote(s.args.choices.join(' '))} ;;`);
  }
  return arms;
}

/** Shell helpers common to bash and zsh: what a path offers, and finding the path. */
function sharedShellFunctions(fn: string, specs: CommandSpec[]): string {
  return [
    caseFunction(`${fn}_subcommands`, specs, (s) => `echo ${shQuote(s.subcommands.map((c) => c.name).join(' '))}`),
    caseFunction(`${fn}_options`, specs, (s) => `echo ${shQuote(flagsOf(s).join(' '))}`),
    caseFunction(`${fn}_value_options`, specs, (s) => `echo ${shQuote(valueFlagsOf(s).join(' '))}`),
    caseFunction(`${fn}_has_args`, specs, (s) => (s.args ? 'return 0' : 'return 1')),
    // "$path|$flag" for option choices, "$path|" for argument choices.
    [`${fn}_choices() {`, '  case "$1" in', ...choiceArms(specs), '  esac', '}'].join('\n'),
    // Word lists are space-separated strings; this test reads the same in bash and zsh.
    `${fn}_contains() {
  [[ -n "$1" && " $2 " == *" $1 "* ]]
}`,
  ].join('\n\n');
}

function bashScript(name: string, specs: CommandSpec[]): string {
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  return `# bash completion for ${name}; generated by \`${name} completion bash\`
${sharedShellFunctions(fn, specs)}

${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" cmdpath="" i w
  (( COMP_CWORD > 0 )) && prev="\${COMP_WORDS[COMP_CWORD-1]}"
  for (( i = 1; i < COMP_CWORD; i++ )); do
    w="\${COMP_WORDS[i]}"
    if [[ "$w" == -* ]]; then
      [[ "$w" != *=* ]] && ${fn}_contains "$w" "$(${fn}_value_options "$cmdpath")" && (( i++ ))
      continue
    fi
    if ${fn}_contains "$w" "$(${fn}_subcommands "$cmdpath")"; then cmdpath="\${cmdpath:+$cmdpath }$w"; fi
  done
  COMPREPLY=()
  local choices
  if [[ "$prev" == -* ]] && ${fn}_contains "$prev" "$(${fn}_value_options "$cmdpath")"; then
    choices="$(${fn}_choices "$cmdpath|$prev")"
    if [[ -n "$choices" ]]; then COMPREPLY=( $(compgen -W "$choices" -- "$cur") ); else compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -f -- "$cur") ); fi
    return 0
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$(${fn}_options "$cmdpath")" -- "$cur") )
    return 0
  fi
  local subs
  subs="$(${fn}_subcommands "$cmdpath")"
  if [[ -n "$subs" ]]; then
    COMPREPLY=( $(compgen -W "$subs" -- "$cur") )
  elif ${fn}_has_args "$cmdpath"; then
    choices="$(${fn}_choices "$cmdpath|")"
    if [[ -n "$choices" ]]; then COMPREPLY=( $(compgen -W "$choices" -- "$cur") ); else compopt -o filenames 2>/dev/null; COMPREPLY=( $(compgen -f -- "$cur") ); fi
  fi
  return 0
}
complete -F ${fn} ${name}
`;
}

function zshScript(name: string, specs: CommandSpec[]): string {
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const describe = (list: { name: string; description: string }[]) => list.map((c) => zshQuote(`${c.name.replace(/:/g, '\\:')}:${oneLine(c.description)}`)).join(' ');
  const optionDescriptions = caseFunction(`${fn}_option_descriptions`, specs, (s) => {
    const entries = s.options.flatMap((o) => o.flags.map((f) => ({ name: f, description: o.description })));
    return `reply=( ${describe(entries)} )`;
  });
  const commandDescriptions = caseFunction(`${fn}_command_descriptions`, specs, (s) => `reply=( ${describe(s.subcommands)} )`);
  return `#compdef ${name}
# zsh completion for ${name}; generated by \`${name} completion zsh\`
${sharedShellFunctions(fn, specs)}

${optionDescriptions}

${commandDescriptions}

${fn}() {
  local cur="\${words[CURRENT]}" prev="\${words[CURRENT-1]}" cmdpath="" w choices
  local -i i
  local -a reply
  for (( i = 2; i < CURRENT; i++ )); do
    w="\${words[i]}"
    if [[ "$w" == -* ]]; then
      [[ "$w" != *=* ]] && ${fn}_contains "$w" "$(${fn}_value_options "$cmdpath")" && (( i++ ))
      continue
    fi
    if ${fn}_contains "$w" "$(${fn}_subcommands "$cmdpath")"; then cmdpath="\${cmdpath:+$cmdpath }$w"; fi
  done
  if [[ "$prev" == -* ]] && ${fn}_contains "$prev" "$(${fn}_value_options "$cmdpath")"; then
    choices="$(${fn}_choices "$cmdpath|$prev")"
    if [[ -n "$choices" ]]; then compadd -- \${=choices}; else _files; fi
    return
  fi
  if [[ "$cur" == -* ]]; then
    ${fn}_option_descriptions "$cmdpath"
    _describe -t options 'option' reply
    return
  fi
  if [[ -n "$(${fn}_subcommands "$cmdpath")" ]]; then
    ${fn}_command_descriptions "$cmdpath"
    _describe -t commands 'command' reply
  elif ${fn}_has_args "$cmdpath"; then
    choices="$(${fn}_choices "$cmdpath|")"
    if [[ -n "$choices" ]]; then compadd -- \${=choices}; else _files; fi
  fi
}

if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then
  ${fn} "$@"
else
  compdef ${fn} ${name}
fi
`;
}

function fishScript(name: string, specs: CommandSpec[]): string {
  const fn = `__${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const switchFunction = (fnName: string, body: (s: CommandSpec) => string) =>
    [`function ${fnName}`, '    switch "$argv[1]"', ...specs.map((s) => `        case ${fishQuote(s.path)}\n            ${body(s)}`), '    end', 'end'].join('\n');
  const lines: string[] = [
    `# fish completion for ${name}; generated by \`${name} completion fish\``,
    switchFunction(`${fn}_subcommands`, (s) => (s.subcommands.length > 0 ? `printf '%s\\n' ${s.subcommands.map((c) => c.name).join(' ')}` : 'return 0')),
    switchFunction(`${fn}_value_options`, (s) => (valueFlagsOf(s).length > 0 ? `printf '%s\\n' ${valueFlagsOf(s).map((f) => fishQuote(f)).join(' ')}` : 'return 0')),
    `function ${fn}_path
    set -l words (commandline -opc)
    set -e words[1]
    set -l cmdpath
    set -l skip 0
    for w in $words
        if test $skip = 1
            set skip 0
            continue
        end
        if string match -q -- '-*' $w
            if not string match -q -- '*=*' $w; and contains -- $w (${fn}_value_options "$cmdpath")
                set skip 1
            end
            continue
        end
        if contains -- $w (${fn}_subcommands "$cmdpath")
            set cmdpath (string join ' ' $cmdpath $w)
        end
    end
    echo "$cmdpath"
end`,
    `function ${fn}_at
    set -l here (${fn}_path)
    test "$here" = "$argv[1]"
end`,
    `complete -c ${name} -f`,
  ];
  for (const s of specs) {
    const at = `-n ${fishQuote(`${fn}_at ${fishQuote(s.path)}`)}`;
    for (const c of s.subcommands) lines.push(`complete -c ${name} ${at} -f -a ${c.name} -d ${fishQuote(oneLine(c.description))}`);
    for (const o of s.options) {
      const flags = o.flags.map((f) => (f.startsWith('--') ? `-l ${f.slice(2)}` : `-s ${f.slice(1)}`)).join(' ');
      const value = o.takesValue ? (o.choices ? ` -x -a ${fishQuote(o.choices.join(' '))}` : ' -r -F') : '';
      lines.push(`complete -c ${name} ${at} ${flags}${value} -d ${fishQuote(oneLine(o.description))}`);
    }
    if (s.args && s.subcommands.length === 0) {
      lines.push(s.args.choices ? `complete -c ${name} ${at} -x -a ${fishQuote(s.args.choices.join(' '))}` : `complete -c ${name} ${at} -F`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** POSIX single quotes (bash and zsh): '…' with ' written as '\''. */
function shQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function zshQuote(text: string): string {
  return shQuote(text);
}

/** fish single quotes: only \\ and \' are escapes inside them. */
function fishQuote(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
