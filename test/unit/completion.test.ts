import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { commandSpecs, completionScript, registerCompletionCommand } from '../../src/cli/completion.js';
import { registerHistoryCommand } from '../../src/cli/historyCommand.js';
import { registerPlanCommand } from '../../src/cli/planCommand.js';

/** The real commands, registered the way main.ts does. */
function program(): Command {
  const p = new Command('offload').version('0.0.0').exitOverride();
  const run = async () => {};
  registerPlanCommand(p, run);
  registerHistoryCommand(p, run);
  registerCompletionCommand(p);
  return p;
}

const dir = mkdtempSync(join(tmpdir(), 'offload-completion-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function scriptFile(shell: 'bash' | 'zsh' | 'fish'): string {
  const file = join(dir, `offload.${shell}`);
  writeFileSync(file, completionScript(program(), shell));
  return file;
}

const has = (shell: string) => spawnSync(shell, ['-c', 'exit 0']).status === 0;

/** Every command path and every long/short flag, found by walking commander independently. */
function everyName(cmd: Command, out: string[] = []): string[] {
  for (const o of cmd.options) out.push(...[o.short, o.long].filter((f): f is string => !!f));
  for (const c of cmd.commands) {
    out.push(c.name());
    everyName(c, out);
  }
  return out;
}

describe('completion scripts', () => {
  const names = everyName(program());

  it('knows every command and option of the program', () => {
    expect(names).toEqual(expect.arrayContaining(['plan', 'history', 'import-nom', 'completion', '--machines', '-j', '--speed-factors']));
    const specs = commandSpecs(program());
    expect(specs.map((s) => s.path)).toEqual(['', 'plan', 'history', 'history import-nom', 'completion']);
    for (const shell of ['bash', 'zsh', 'fish'] as const) {
      const text = completionScript(program(), shell);
      for (const name of names) {
        const asWritten = shell === 'fish' ? (name.startsWith('--') ? `-l ${name.slice(2)}` : name.startsWith('-') ? `-s ${name.slice(1)}` : `-a ${name}`) : name;
        expect(text, `${shell} lacks ${name}`).toContain(asWritten);
      }
    }
  });

  it('bash: valid syntax, and completes commands, options, choices and files', () => {
    const file = scriptFile('bash');
    execFileSync('bash', ['-n', file]);
    const complete = (...words: string[]) =>
      execFileSync(
        'bash',
        ['-c', `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _offload; printf '%s\\n' "\${COMPREPLY[@]}"`, 'x', file, ...words],
        { cwd: dir, encoding: 'utf8' },
      )
        .split('\n')
        .filter((l) => l !== '');
    expect(complete('offload', '')).toEqual(['plan', 'history', 'completion', 'help']);
    expect(complete('offload', 'plan', '--ma')).toEqual(['--machines', '--max-jobs']);
    expect(complete('offload', 'completion', '')).toEqual(['bash', 'zsh', 'fish']);
    expect(complete('offload', 'history', 'import-nom', '--s')).toEqual(['--system', '--speed-factors', '--state']);
    // An option's value that looks like a command name is skipped, not taken as a command.
    expect(complete('offload', 'plan', '--machines', 'history', '--fr')).toEqual(['--from-json']);
    expect(complete('offload', 'plan', '--machines', 'offload.b')).toEqual(['offload.bash']);
  });

  it('zsh: valid syntax and completes through the same paths (when zsh is installed)', () => {
    const file = scriptFile('zsh');
    expect(file).toMatch(/offload\.zsh$/);
    if (!has('zsh')) return; // not installed in CI
    execFileSync('zsh', ['-n', file]);
    const stubs = `compdef() { : }; _describe() { local a=$4; print -rl -- \${(P)a} }; compadd() { shift; print -rl -- "$@" }; _files() { print -r -- FILES }`;
    const complete = (...words: string[]) =>
      execFileSync('zsh', ['-c', `${stubs}; source "$1"; shift; words=("$@"); CURRENT=$#; _offload`, 'x', file, ...words], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l !== '');
    expect(complete('offload', '')).toEqual(expect.arrayContaining(['plan:dry run: which host builds each derivation, when, and why (never connects anywhere)']));
    expect(complete('offload', 'completion', '')).toEqual(['bash', 'zsh', 'fish']);
    expect(complete('offload', 'plan', '--machines', '')).toEqual(['FILES']);
  });

  it('fish: valid syntax and completes through the same paths (when fish is installed)', () => {
    const file = scriptFile('fish');
    expect(file).toMatch(/offload\.fish$/);
    if (!has('fish')) return; // not installed in CI
    execFileSync('fish', ['--no-execute', file]);
    const complete = (line: string) =>
      execFileSync('fish', ['-c', 'source $argv[1]; complete -C $argv[2]', file, line], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => l.split('\t')[0]);
    expect(complete('offload ').sort()).toEqual(['completion', 'help', 'history', 'plan']);
    expect(complete('offload history import-nom --s').sort()).toEqual(['--speed-factors', '--system']);
    expect(complete('offload completion ').sort()).toEqual(['bash', 'fish', 'zsh']);
  });

  it('offload completion <shell> prints the script; unknown shells are refused', async () => {
    const p = program();
    let printed = '';
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string) => ((printed += chunk), true));
    try {
      await p.parseAsync(['node', 'offload', 'completion', 'fish']);
    } finally {
      process.stdout.write = write;
    }
    expect(printed).toBe(completionScript(program(), 'fish'));
    const q = program();
    q.configureOutput({ writeErr: () => {} });
    for (const c of q.commands) c.exitOverride().configureOutput({ writeErr: () => {} });
    await expect(q.parseAsync(['node', 'offload', 'completion', 'powershell'])).rejects.toThrow(/Allowed choices are bash, zsh, fish/);
  });
});
