import { dirname, isAbsolute, resolve } from 'node:path';
import { NixConfError } from '../errors.js';

/** Where one line of Nix configuration was written. */
export type ConfPlace = { kind: 'file'; path: string; line: number } | { kind: 'variable'; variable: 'NIX_CONFIG'; line: number };

/** One `name = value` line, as Nix joins it: the words after "=" separated by single spaces. */
export interface Assignment {
  name: string;
  value: string;
  place: ConfPlace;
}

/**
 * Reads a file for an include. Returns undefined when nothing is there;
 * throws a NodeJS.ErrnoException when something is there but cannot be read.
 */
export type ConfFileReader = (path: string) => string | undefined;

/** Thrown when a file exists but cannot be read: Nix then drops the whole top-level file it was reading. */
export class UnreadableConfFile extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
  }
}

/**
 * The assignments in one piece of Nix configuration, includes expanded in
 * place, in the order written, read the way Nix 2.8's applyConfigInner
 * (libutil/config.cc) reads them:
 * - lines end at "\n"; "#" starts a comment anywhere (there is no quoting);
 * - words are split on spaces, tabs and "\r"; "=" must be a word of its own;
 * - `include PATH` is an error when PATH is missing, `!include PATH` is not;
 *   PATH is relative to the including file's folder, and NIX_CONFIG has no
 *   folder, so there it must be absolute.
 * Nix recurses into an include that includes itself until it crashes; here
 * that is an error naming the cycle.
 */
export function parseNixConf(text: string, origin: Origin, read: ConfFileReader): Assignment[] {
  return parseInto(text, origin, read, []);
}

/** What is being parsed: a file (its path), or the NIX_CONFIG variable. */
export type Origin = { kind: 'file'; path: string } | { kind: 'variable'; variable: 'NIX_CONFIG' };

function parseInto(text: string, origin: Origin, read: ConfFileReader, including: string[]): Assignment[] {
  const result: Assignment[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, index) => {
    const place: ConfPlace = origin.kind === 'file' ? { kind: 'file', path: origin.path, line: index + 1 } : { kind: 'variable', variable: origin.variable, line: index + 1 };
    const hash = raw.indexOf('#');
    const line = hash >= 0 ? raw.slice(0, hash) : raw;
    const words = line.split(/[ \t\r]+/).filter((word) => word !== '');
    if (words.length === 0) return;
    const illegal = () => new NixConfError(`${describePlace(place)}: illegal configuration line '${line.trim()}' (Nix expects "name = value", with spaces around "=")`);
    if (words.length < 2) throw illegal();
    if (words[0] === 'include' || words[0] === '!include') {
      if (words.length !== 2) throw illegal();
      result.push(...include(words[1]!, words[0] === '!include', place, origin, read, including));
      return;
    }
    if (words[1] !== '=') throw illegal();
    result.push({ name: words[0]!, value: words.slice(2).join(' '), place });
  });
  return result;
}

function include(target: string, ignoreMissing: boolean, place: ConfPlace, origin: Origin, read: ConfFileReader, including: string[]): Assignment[] {
  if (origin.kind === 'variable' && !isAbsolute(target)) {
    throw new NixConfError(`${describePlace(place)}: include '${target}' must be an absolute path in ${origin.variable} (Nix: not an absolute path)`);
  }
  const path = origin.kind === 'file' ? resolve(dirname(origin.path), target) : resolve(target);
  const chain = origin.kind === 'file' ? [...including, origin.path] : including;
  if (chain.includes(path)) {
    throw new NixConfError(`${describePlace(place)}: ${path} includes itself (${[...chain, path].join(' -> ')})`);
  }
  let text: string | undefined;
  try {
    text = read(path);
  } catch (error) {
    throw new UnreadableConfFile(path, (error as NodeJS.ErrnoException).code ?? String(error));
  }
  if (text === undefined) {
    if (ignoreMissing) return [];
    throw new NixConfError(`${describePlace(place)}: included file '${path}' not found (use "!include" for a file that may be missing)`);
  }
  return parseInto(text, { kind: 'file', path }, read, chain);
}

export function describePlace(place: ConfPlace): string {
  return place.kind === 'file' ? `${place.path}:${place.line}` : `${place.variable} line ${place.line}`;
}
