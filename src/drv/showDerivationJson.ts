import { jsonDepthProblem, lineAndColumn } from '../config/jsonSyntax.js';
import { DEFAULT_STORE_DIR, drvPathProblem, pathNameProblem, storePathProblem } from '../storePath/storePath.js';
import type { Derivation, DerivationOutput } from './derivation.js';
import { completeDerivation } from './derivationFacts.js';
import { DrvJsonError } from './errors.js';
import { canonicalSet, setOwn } from './nixOrder.js';

/**
 * Reads `nix show-derivation -r` output (Nix 2.8 spelling; newer Nix calls it
 * `nix derivation show`): an object keyed by `.drv` path. Checked by hand
 * rather than with a schema library: the firefox closure is tens of MB of env
 * strings, and every error must name the source file and the exact key.
 */
export function readShowDerivationJson(
  text: string,
  source: string,
  storeDir: string = DEFAULT_STORE_DIR,
): Map<string, Derivation> {
  const tooDeep = jsonDepthProblem(text);
  if (tooDeep) {
    const { line, column } = lineAndColumn(text, tooDeep.index);
    throw new DrvJsonError(source, undefined, `line ${line} column ${column}: JSON ${tooDeep.reason}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new DrvJsonError(source, undefined, `not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return derivationsFromJson(value, source, storeDir);
}

/** Same as {@link readShowDerivationJson} for an already-parsed value. */
export function derivationsFromJson(
  value: unknown,
  source: string,
  storeDir: string = DEFAULT_STORE_DIR,
): Map<string, Derivation> {
  const reader = new JsonReader(source, storeDir);
  const top = reader.object(value, undefined, 'an object keyed by derivation path');
  const drvs = new Map<string, Derivation>();
  for (const [drvPath, entry] of Object.entries(top)) drvs.set(drvPath, reader.derivation(drvPath, entry));
  return drvs;
}

class JsonReader {
  constructor(
    private readonly source: string,
    private readonly storeDir: string,
  ) {}

  derivation(drvPath: string, value: unknown): Derivation {
    const key = JSON.stringify(drvPath);
    this.path(drvPath, key, drvPathProblem);
    const entry = this.object(value, key, 'an object');
    const fields = {
      drvPath,
      outputs: this.outputs(entry['outputs'], `${key}.outputs`),
      inputDrvs: this.inputDrvs(entry['inputDrvs'] ?? {}, `${key}.inputDrvs`),
      inputSrcs: canonicalSet(
        this.strings(entry['inputSrcs'] ?? [], `${key}.inputSrcs`).map((p, i) =>
          this.path(p, `${key}.inputSrcs[${i}]`, storePathProblem),
        ),
      ),
      system: this.string(entry['system'], `${key}.system`),
      builder: this.string(entry['builder'], `${key}.builder`),
      args: this.strings(entry['args'] ?? [], `${key}.args`),
      env: this.env(entry['env'] ?? {}, `${key}.env`),
    };
    return completeDerivation(fields, (problem) => this.fail(`${key}.env.__json`, problem));
  }

  private outputs(value: unknown, key: string): Record<string, DerivationOutput> {
    const outputs: Record<string, DerivationOutput> = {};
    for (const [name, raw] of Object.entries(this.object(value, key, 'an object of outputs'))) {
      this.outputName(name, key);
      const at = `${key}.${name}`;
      const o = this.object(raw, at, 'an object');
      // Floating content-addressed and deferred outputs have no path yet.
      const path = o['path'] === undefined ? '' : this.string(o['path'], `${at}.path`);
      if (path !== '') this.path(path, `${at}.path`, storePathProblem);
      setOwn(outputs, name, {
        path,
        hashAlgo: o['hashAlgo'] === undefined ? '' : this.string(o['hashAlgo'], `${at}.hashAlgo`),
        hash: o['hash'] === undefined ? '' : this.string(o['hash'], `${at}.hash`),
      });
    }
    return outputs;
  }

  private inputDrvs(value: unknown, key: string): Record<string, string[]> {
    const inputs: Record<string, string[]> = {};
    for (const [path, raw] of Object.entries(this.object(value, key, 'an object of input derivations'))) {
      const at = `${key}[${JSON.stringify(path)}]`;
      this.path(path, at, drvPathProblem);
      // Newer Nix spells each input as { outputs: [...], dynamicOutputs: {} }.
      const list = isPlainObject(raw) ? raw['outputs'] : raw;
      const names = this.strings(list, at);
      names.forEach((n, i) => this.outputName(n, `${at}[${i}]`));
      setOwn(inputs, path, canonicalSet(names));
    }
    return inputs;
  }

  private env(value: unknown, key: string): Record<string, string> {
    const env = this.object(value, key, 'an object of strings');
    for (const [name, v] of Object.entries(env)) {
      this.string(name, `${key} (a name)`);
      this.string(v, `${key}[${JSON.stringify(name)}]`);
    }
    return env as Record<string, string>;
  }

  object(value: unknown, key: string | undefined, expected: string): Record<string, unknown> {
    if (!isPlainObject(value)) this.fail(key, `expected ${expected}, found ${describe(value)}`);
    return value;
  }

  private strings(value: unknown, key: string): string[] {
    if (!Array.isArray(value)) this.fail(key, `expected a list of strings, found ${describe(value)}`);
    value.forEach((v, i) => this.string(v, `${key}[${i}]`));
    return value as string[];
  }

  /**
   * A string from JSON is text, so it maps to bytes as UTF-8. An unpaired
   * surrogate (`"\udc80"`) maps to no bytes at all; Nix never prints one, so
   * the file was not written by Nix and is refused rather than guessed at.
   */
  private string(value: unknown, key: string): string {
    if (typeof value !== 'string') this.fail(key, `expected a string, found ${describe(value)}`);
    if (UNPAIRED_SURROGATE.test(value)) {
      const at = UNPAIRED_SURROGATE.exec(value)!;
      const code = at[0].charCodeAt(0).toString(16);
      this.fail(key, `the string holds the unpaired surrogate \\u${code} at character ${at.index}, which stands for no bytes (Nix writes valid UTF-8)`);
    }
    return value;
  }

  private path(p: string, key: string, problemOf: (p: string, storeDir: string) => string | undefined): string {
    const problem = problemOf(p, this.storeDir);
    if (problem !== undefined) this.fail(key, `${JSON.stringify(p)} is not a valid store path in ${this.storeDir}: ${problem}`);
    return p;
  }

  private outputName(name: string, key: string): void {
    const problem = pathNameProblem(name);
    if (problem !== undefined) this.fail(key, `output name ${JSON.stringify(name)} ${problem}`);
  }

  private fail(key: string | undefined, problem: string): never {
    throw new DrvJsonError(this.source, key, problem);
  }
}

const UNPAIRED_SURROGATE = /[\uD800-\uDFFF]/u;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return `a ${typeof value}`;
}
