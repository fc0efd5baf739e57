import { ExitCode, OffloadError } from '../errors/offloadError.js';
import { encodeDrvText } from './drvBytes.js';

export interface TextPosition {
  /** 1-based. */
  line: number;
  /** 1-based, in characters. */
  column: number;
  /** 0-based offset in the UTF-8 bytes of the file. */
  byteOffset: number;
}

/** Computed only when an error is thrown, so the scanner never tracks lines. */
export function positionAt(text: string, index: number): TextPosition {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < index; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return {
    line,
    column: index - lineStart + 1,
    byteOffset: encodeDrvText(text.slice(0, index)).length,
  };
}

/** A `.drv` file that is not a well-formed `Derive(...)` term. */
export class DrvParseError extends OffloadError {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly byteOffset: number;
  readonly expected: string;
  constructor(file: string, text: string, index: number, expected: string, options?: { cause?: unknown }) {
    const pos = positionAt(text, index);
    const found = index < text.length ? `found ${JSON.stringify(text.slice(index, index + 12))}` : 'found end of file';
    super(
      `expected ${expected} at line ${pos.line} col ${pos.column} (byte ${pos.byteOffset}) in ${file}, ${found}.`,
      ExitCode.badInput,
      options,
    );
    this.file = file;
    this.line = pos.line;
    this.column = pos.column;
    this.byteOffset = pos.byteOffset;
    this.expected = expected;
  }
}

/** A derivation file that the closure needs but that does not exist. */
export class DrvNotFoundError extends OffloadError {
  readonly drvPath: string;
  readonly file: string;
  readonly referencedBy: string | undefined;
  constructor(drvPath: string, file: string, referencedBy: string | undefined, options?: { cause?: unknown }) {
    const source = referencedBy === undefined ? 'requested as a root' : `an input of ${referencedBy}`;
    const where = file === drvPath ? '' : ` (looked for ${file})`;
    super(`derivation ${drvPath}${where}, ${source}, does not exist.`, ExitCode.badInput, options);
    this.drvPath = drvPath;
    this.file = file;
    this.referencedBy = referencedBy;
  }
}

/** A derivation file that exists but could not be read (permissions, a directory, ...). */
export class DrvReadError extends OffloadError {
  readonly file: string;
  constructor(file: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`could not read derivation file ${file}: ${reason}.`, ExitCode.badInput, { cause });
    this.file = file;
  }
}

/** `nix show-derivation` JSON that does not have the expected shape. */
export class DrvJsonError extends OffloadError {
  readonly source: string;
  readonly key: string | undefined;
  constructor(source: string, key: string | undefined, problem: string, options?: { cause?: unknown }) {
    const where = key === undefined ? '' : ` at ${key}`;
    super(`derivation JSON ${source}${where}: ${problem}.`, ExitCode.badInput, options);
    this.source = source;
    this.key = key;
  }
}
