import { access, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDrv } from '../drv/parseDrv.js';
import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { assertDrvPath, assertStorePath } from '../storePath/storePath.js';
import type { ExpressionOptions, Installable, OutputSelection, WantedDerivation } from './installable.js';
import { runNixCommand } from './nixCommand.js';
import { InstallableSyntaxError, parseInstallable } from './parseInstallable.js';
import { storePathBehind } from './storePathBehind.js';

export interface ResolveOptions {
  expression: ExpressionOptions;
  storeDir: string;
  /** Folder for nix-instantiate's GC roots (they keep the .drv files alive while offload works on them), asked only when something is evaluated. */
  gcRootDir: () => string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Usage problems that are not about one argument's syntax. */
export class InstallableUsageError extends OffloadError {
  constructor(message: string) {
    super(message, ExitCode.badInput);
  }
}

/**
 * Turns what the user typed into derivations and wanted outputs, always by
 * asking Nix (offload never evaluates Nix code itself):
 *
 * - a `.nix` file, a directory or `<lookup>`: `nix-instantiate` with `-A`,
 *   `--arg`, `--argstr`, `-I`, like nix-build; each derivation wants the
 *   output nix-build would link (`!dev` when the attribute picked one);
 * - a flake reference: `nix eval` of the attribute's `drvPath` and
 *   `outputName`, with the experimental features flakes need switched on
 *   for that call only;
 * - a derivation path (or a symlink to one): itself, with the outputs after
 *   `^` (all without);
 * - another store path (or a link to one, like `./result`): that output of
 *   a derivation in the local store that produces it.
 *
 * No argument means `./default.nix`, as for nix-build. A Nix error reaches
 * the terminal as Nix wrote it and ends the command with Nix's exit code,
 * before anything is planned or dispatched.
 */
export async function resolveInstallables(texts: readonly string[], options: ResolveOptions): Promise<WantedDerivation[]> {
  const cwd = options.cwd ?? process.cwd();
  if (texts.length === 0) {
    try {
      await access(join(cwd, 'default.nix'));
    } catch {
      throw new InstallableUsageError(
        `nothing to build: no derivation was given and there is no default.nix in ${cwd} (give a .drv path, a .nix file with -A, or a flake reference such as .#hello).`,
      );
    }
    texts = ['./default.nix'];
  }
  const parsed = texts.map(parseInstallable);
  const classified: Classified[] = [];
  for (const installable of parsed) classified.push(await classify(installable, options.storeDir, cwd));
  checkExpressionOptions(classified, options.expression);
  const wanted: WantedDerivation[] = [];
  let evaluations = 0;
  for (const item of classified) {
    switch (item.kind) {
      case 'derivation':
        assertDrvPath(item.drvPath, JSON.stringify(item.text), options.storeDir);
        wanted.push({ drvPath: item.drvPath, outputs: selected(item.outputs) ?? 'all', from: item.text });
        break;
      case 'output':
        wanted.push(await deriverOf(item.text, item.path, options, cwd));
        break;
      case 'expression':
        wanted.push(...(await instantiate(item.text, item.path, options, cwd, `eval-${++evaluations}`)));
        break;
      case 'flake':
        wanted.push(await evaluateFlake(item.installable, options, cwd));
        break;
    }
  }
  if (wanted.length === 0) throw new InstallableUsageError(`nothing to build: ${texts.join(' ')} evaluated to no derivations.`);
  return wanted;
}

type Classified =
  | { kind: 'derivation'; text: string; drvPath: string; outputs: OutputSelection | undefined }
  | { kind: 'output'; text: string; path: string }
  | { kind: 'expression'; text: string; path: string }
  | { kind: 'flake'; text: string; installable: Extract<Installable, { kind: 'flake' }> };

/** What a path leads to; only the filesystem can say. */
async function classify(installable: Installable, storeDir: string, cwd: string): Promise<Classified> {
  if (installable.kind === 'flake') return { kind: 'flake', text: installable.text, installable };
  if (installable.kind === 'lookupPath') return { kind: 'expression', text: installable.text, path: installable.path };
  const storePath = await storePathBehind(installable.path, { storeDir, cwd });
  if (storePath?.endsWith('.drv')) return { kind: 'derivation', text: installable.text, drvPath: storePath, outputs: installable.outputs };
  if (installable.outputs !== undefined) {
    const what = storePath === undefined ? 'a Nix expression (use -A to pick an attribute)' : `the store path ${storePath}, not a derivation`;
    throw new InstallableSyntaxError(installable.text, `outputs can only be chosen of a derivation, and ${installable.path} is ${what}`);
  }
  if (storePath !== undefined) return { kind: 'output', text: installable.text, path: storePath };
  return { kind: 'expression', text: installable.text, path: installable.path };
}

function checkExpressionOptions(classified: readonly Classified[], expression: ExpressionOptions): void {
  const given = [
    ...expression.attrs.map(() => '-A'),
    ...expression.args.map(() => '--arg'),
    ...expression.argstrs.map(() => '--argstr'),
  ];
  if (given.length > 0 && !classified.some((c) => c.kind === 'expression')) {
    throw new InstallableUsageError(
      `${[...new Set(given)].join(', ')} apply to Nix expression files (like nix-build), and none was given: ${classified.map((c) => c.text).join(' ')} (a flake reference names its attribute after "#").`,
    );
  }
}

function selected(outputs: OutputSelection | undefined): WantedDerivation['outputs'] | undefined {
  if (outputs === undefined) return undefined;
  return outputs.kind === 'all' ? 'all' : outputs.names;
}

function expressionArgs(expression: ExpressionOptions): string[] {
  return [
    ...expression.includes.flatMap((path) => ['-I', path]),
    ...expression.args.flatMap(({ name, expr }) => ['--arg', name, expr]),
    ...expression.argstrs.flatMap(({ name, value }) => ['--argstr', name, value]),
    ...expression.attrs.flatMap((attr) => ['-A', attr]),
  ];
}

/**
 * nix-instantiate prints one line per derivation: the GC root it made (it
 * points at the .drv) and `!output` when the attribute chose an output other
 * than `out`, which is what nix-build would build and link.
 */
async function instantiate(text: string, path: string, options: ResolveOptions, cwd: string, rootName: string): Promise<WantedDerivation[]> {
  const attrs = options.expression.attrs.length > 0 ? ` -A ${options.expression.attrs.join(' -A ')}` : '';
  const what = `evaluating ${text}${attrs}`;
  const root = join(options.gcRootDir(), rootName);
  const stdout = await runNixCommand('nix-instantiate', ['--add-root', root, ...expressionArgs(options.expression), '--', path], { what, cwd, env: options.env });
  const wanted: WantedDerivation[] = [];
  for (const line of stdout.split('\n').filter((l) => l !== '')) {
    const bang = line.lastIndexOf('!');
    const link = bang > line.lastIndexOf('/') ? line.slice(0, bang) : line;
    const output = bang > line.lastIndexOf('/') ? line.slice(bang + 1) : 'out';
    const drvPath = await readlink(link);
    assertDrvPath(drvPath, `the derivation nix-instantiate made for ${text}`, options.storeDir);
    wanted.push({ drvPath, outputs: [output], from: text });
  }
  return wanted;
}

/**
 * Only derivations are built, as `nix build` builds them; the attribute
 * search (`packages.<system>.x`, `legacyPackages.<system>.x`, `x`) and the
 * default package are Nix's own.
 */
const FLAKE_ATTRIBUTE_INFO = `v: if (v.type or null) == "derivation" then { drvPath = v.drvPath; outputName = v.outputName or "out"; } else throw "offload builds derivations, and this flake output is of type \${builtins.typeOf v}"`;

async function evaluateFlake(installable: Extract<Installable, { kind: 'flake' }>, options: ResolveOptions, cwd: string): Promise<WantedDerivation> {
  const reference = installable.fragment === undefined ? installable.flakeRef : `${installable.flakeRef}#${installable.fragment}`;
  const stdout = await runNixCommand(
    'nix',
    ['--extra-experimental-features', 'nix-command flakes', 'eval', '--json', reference, '--apply', FLAKE_ATTRIBUTE_INFO],
    { what: `evaluating ${installable.text}`, cwd, env: options.env },
  );
  let info: { drvPath?: unknown; outputName?: unknown };
  try {
    info = JSON.parse(stdout) as typeof info;
  } catch (cause) {
    throw new OffloadError(`nix eval printed something other than JSON for ${installable.text}: ${stdout.slice(0, 200)}`, ExitCode.internal, { cause });
  }
  if (typeof info.drvPath !== 'string' || typeof info.outputName !== 'string') {
    throw new OffloadError(`nix eval gave no derivation path for ${installable.text}: ${stdout.slice(0, 200)}`, ExitCode.internal);
  }
  assertDrvPath(info.drvPath, `the derivation of ${installable.text}`, options.storeDir);
  return { drvPath: info.drvPath, outputs: selected(installable.outputs) ?? [info.outputName], from: installable.text };
}

/**
 * An output path is built through a derivation in the local store that
 * produces it: `nix path-info --derivation` finds one even when the output
 * itself is not valid here (Nix's valid-derivers query), which is when
 * building it means anything.
 */
async function deriverOf(text: string, path: string, options: ResolveOptions, cwd: string): Promise<WantedDerivation> {
  assertStorePath(path, JSON.stringify(text), options.storeDir);
  const what = `finding the derivation that produces ${path}`;
  const stdout = await runNixCommand('nix', ['--extra-experimental-features', 'nix-command', 'path-info', '--derivation', '--', path], { what, cwd, env: options.env });
  const deriver = stdout.trim();
  assertDrvPath(deriver, `the deriver of ${path}`, options.storeDir);
  const drv = parseDrv(await readFile(deriver, 'utf8'), deriver, { storeDir: options.storeDir });
  const output = Object.entries(drv.outputs).find(([, o]) => o.path === path)?.[0];
  if (output === undefined) throw new InstallableUsageError(`cannot build ${text}: ${path} is not an output of its deriver ${deriver}.`);
  return { drvPath: deriver, outputs: [output], from: text };
}
