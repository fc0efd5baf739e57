import { assertDrvPath, DEFAULT_STORE_DIR, drvPathProblem, pathNameProblem, storePathProblem } from '../storePath/storePath.js';
import type { Derivation, DerivationOutput } from './derivation.js';
import { completeDerivation } from './derivationFacts.js';
import { DrvParseError } from './errors.js';
import { canonicalSet, setOwn } from './nixOrder.js';

export interface ParseDrvOptions {
  storeDir?: string;
  /** Where the text came from, for error messages; defaults to the derivation path. */
  file?: string;
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const OPEN_PAREN = 0x28;
const CLOSE_PAREN = 0x29;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * Parses the ATerm text of a `.drv` file:
 * `Derive([outputs],[inputDrvs],[inputSrcs],system,builder,[args],[env])`.
 * Every store path in it is validated, since derivation text is untrusted and
 * its paths end up in commands and on other machines. Sets (inputSrcs, the
 * output names of each input) come back sorted and de-duplicated, as Nix holds them.
 */
export function parseDrv(text: string, drvPath: string, opts: ParseDrvOptions = {}): Derivation {
  const storeDir = opts.storeDir ?? DEFAULT_STORE_DIR;
  assertDrvPath(drvPath, 'derivation path', storeDir);
  return new DrvScanner(text, opts.file ?? drvPath, storeDir).derivation(drvPath);
}

class DrvScanner {
  private pos = 0;
  /** Positions of the next '"' and '\\' at or after the last search; -1 once none is left. */
  private quoteAt: number;
  private backslashAt: number;

  constructor(
    private readonly text: string,
    private readonly file: string,
    private readonly storeDir: string,
  ) {
    this.quoteAt = text.indexOf('"');
    this.backslashAt = text.indexOf('\\');
  }

  derivation(drvPath: string): Derivation {
    this.word('Derive');
    this.char(OPEN_PAREN, "'('");
    const outputs: Record<string, DerivationOutput> = {};
    this.list(() => this.output(outputs));
    this.char(COMMA, "','");
    const inputDrvs: Record<string, string[]> = {};
    this.list(() => this.inputDrv(inputDrvs));
    this.char(COMMA, "','");
    const inputSrcs: string[] = [];
    this.list(() => inputSrcs.push(this.storePath('an input source store path', storePathProblem)));
    this.char(COMMA, "','");
    const system = this.string();
    this.char(COMMA, "','");
    const builder = this.string();
    this.char(COMMA, "','");
    const args: string[] = [];
    this.list(() => args.push(this.string()));
    this.char(COMMA, "','");
    const envStart = this.pos;
    const env: Record<string, string> = {};
    this.list(() => this.envPair(env));
    this.char(CLOSE_PAREN, "')'");
    this.end();
    const fields = { drvPath, outputs, inputDrvs, inputSrcs: canonicalSet(inputSrcs), system, builder, args, env };
    return completeDerivation(fields, (problem) => this.fail(`valid structured attrs (${problem})`, envStart));
  }

  private output(outputs: Record<string, DerivationOutput>): void {
    this.char(OPEN_PAREN, "'(' starting an output");
    const name = this.name('an output name', outputs);
    this.char(COMMA, "','");
    const path = this.peekEmptyString() ? this.string() : this.storePath('an output store path', storePathProblem);
    this.char(COMMA, "','");
    const hashAlgo = this.string();
    this.char(COMMA, "','");
    const hash = this.string();
    this.char(CLOSE_PAREN, "')' ending an output");
    setOwn(outputs, name, { path, hashAlgo, hash });
  }

  private inputDrv(inputDrvs: Record<string, string[]>): void {
    this.char(OPEN_PAREN, "'(' starting an input derivation");
    const start = this.pos;
    const path = this.storePath('an input derivation path', drvPathProblem);
    if (Object.hasOwn(inputDrvs, path)) this.fail('each input derivation once', start);
    this.char(COMMA, "','");
    const names: string[] = [];
    this.list(() => names.push(this.name('an output name', undefined)));
    this.char(CLOSE_PAREN, "')' ending an input derivation");
    setOwn(inputDrvs, path, canonicalSet(names));
  }

  private envPair(env: Record<string, string>): void {
    this.char(OPEN_PAREN, "'(' starting an environment variable");
    const start = this.pos;
    const key = this.string();
    if (Object.hasOwn(env, key)) this.fail('each environment variable once', start);
    this.char(COMMA, "','");
    const value = this.string();
    this.char(CLOSE_PAREN, "')' ending an environment variable");
    setOwn(env, key, value);
  }

  /** An output name: it becomes part of store paths, so it must be a valid path name. */
  private name(what: string, unique: Record<string, unknown> | undefined): string {
    const start = this.pos;
    const name = this.string();
    const problem = pathNameProblem(name);
    if (problem !== undefined) this.fail(`${what} (this one ${problem})`, start);
    if (unique !== undefined && Object.hasOwn(unique, name)) this.fail(`${what} not seen before`, start);
    return name;
  }

  private storePath(what: string, problemOf: (p: string, storeDir: string) => string | undefined): string {
    const start = this.pos;
    const path = this.string();
    const problem = problemOf(path, this.storeDir);
    if (problem !== undefined) this.fail(`${what} in ${this.storeDir} (${problem})`, start);
    return path;
  }

  private list(item: () => void): void {
    this.char(OPEN_BRACKET, "'['");
    if (this.text.charCodeAt(this.pos) === CLOSE_BRACKET) {
      this.pos++;
      return;
    }
    for (;;) {
      item();
      const c = this.text.charCodeAt(this.pos);
      if (c === COMMA) this.pos++;
      else if (c === CLOSE_BRACKET) {
        this.pos++;
        return;
      } else this.fail("',' or ']'");
    }
  }

  private peekEmptyString(): boolean {
    return this.text.charCodeAt(this.pos) === QUOTE && this.text.charCodeAt(this.pos + 1) === QUOTE;
  }

  /** A quoted string with Nix's escapes; any other escaped character stands for itself, as in Nix. */
  private string(): string {
    this.char(QUOTE, "'\"'");
    const text = this.text;
    let out = '';
    let start = this.pos;
    for (;;) {
      const quote = this.nextQuote(start);
      if (quote === -1) this.fail("'\"' closing the string", text.length);
      const backslash = this.nextBackslash(start);
      if (backslash === -1 || backslash > quote) {
        this.pos = quote + 1;
        return out + text.slice(start, quote);
      }
      out += text.slice(start, backslash);
      const escaped = text.charCodeAt(backslash + 1);
      if (Number.isNaN(escaped)) this.fail('an escaped character after \\', backslash + 1);
      out += escaped === 0x6e ? '\n' : escaped === 0x72 ? '\r' : escaped === 0x74 ? '\t' : text.charAt(backslash + 1);
      start = backslash + 2;
    }
  }

  /*
   * The next quote and backslash are cached: rescanning for the closing quote
   * after every escape would make long env scripts quadratic.
   */
  private nextQuote(from: number): number {
    if (this.quoteAt !== -1 && this.quoteAt < from) this.quoteAt = this.text.indexOf('"', from);
    return this.quoteAt;
  }

  private nextBackslash(from: number): number {
    if (this.backslashAt !== -1 && this.backslashAt < from) this.backslashAt = this.text.indexOf('\\', from);
    return this.backslashAt;
  }

  private char(code: number, expected: string): void {
    if (this.text.charCodeAt(this.pos) !== code) this.fail(expected);
    this.pos++;
  }

  private word(word: string): void {
    if (!this.text.startsWith(word, this.pos)) this.fail(`'${word}'`);
    this.pos += word.length;
  }

  /** Editors add a final newline to hand-written files; anything else after the term is an error. */
  private end(): void {
    const rest = this.text.slice(this.pos);
    if (rest.trim() !== '') this.fail('end of file after the derivation');
  }

  private fail(expected: string, at: number = this.pos): never {
    throw new DrvParseError(this.file, this.text, at, expected);
  }
}
