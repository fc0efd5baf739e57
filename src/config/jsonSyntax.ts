/**
 * Finds where JSON text first goes wrong. Only called after JSON.parse has
 * failed: V8's messages do not always carry a position, and a user needs the
 * line and column to fix a hand-edited file.
 */
export interface JsonSyntaxProblem {
  index: number;
  reason: string;
}

/** Unwinds the recursive scan at the first problem. */
class Found extends Error {
  constructor(readonly problem: JsonSyntaxProblem) {
    super(problem.reason);
  }
}

/**
 * How deep any JSON offload reads may nest. Real inputs stay far below it (a
 * machines file is 4 levels, structured attrs a few more); the limit exists
 * because code that walks a parsed value (validation, error messages,
 * JSON.stringify) recurses, and 5,000 levels overflow the stack.
 */
export const MAX_JSON_DEPTH = 256;

/**
 * Where `text` first nests deeper than `maxDepth` arrays and objects, or
 * undefined. A flat scan (strings skipped, escapes honoured), so it is safe
 * on any input and runs before JSON.parse.
 */
export function jsonDepthProblem(text: string, maxDepth: number = MAX_JSON_DEPTH): JsonSyntaxProblem | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x22) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (code === 0x5b || code === 0x7b) {
      if (++depth > maxDepth) return { index: i, reason: `nested deeper than ${maxDepth} levels of arrays and objects` };
    } else if (code === 0x5d || code === 0x7d) {
      depth--;
    }
  }
  return undefined;
}

/** 1-based line and column of a character index, for messages. */
export function lineAndColumn(text: string, index: number): { line: number; column: number } {
  const lines = text.slice(0, index).split('\n');
  return { line: lines.length, column: (lines.at(-1)?.length ?? 0) + 1 };
}

export function findJsonSyntaxProblem(text: string): JsonSyntaxProblem | undefined {
  let i = 0;
  const fail = (reason: string): never => {
    throw new Found({ index: i, reason });
  };
  const describeHere = () => (i >= text.length ? 'unexpected end of file' : `unexpected ${JSON.stringify(text[i])}`);
  const skipSpace = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const expect = (char: string) => {
    skipSpace();
    if (text[i] !== char) fail(`expected "${char}", ${describeHere()}`);
    i++;
  };
  const string = () => {
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i]! < ' ') fail('control character inside a string');
      if (text[i] === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('bad \\u escape');
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? 'x')) fail('bad escape');
      }
      i++;
    }
    if (i >= text.length) fail('unterminated string');
    i++;
  };
  const value = (): void => {
    skipSpace();
    const char = text[i];
    if (char === '{') return container('}', () => {
      skipSpace();
      if (text[i] !== '"') fail(`expected a field name in double quotes, ${describeHere()}`);
      string();
      expect(':');
      value();
    });
    if (char === '[') return container(']', value);
    if (char === '"') return string();
    const literal = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i));
    if (!literal) fail(describeHere());
    i += literal![0].length;
  };
  const container = (close: string, item: () => void) => {
    i++;
    skipSpace();
    if (text[i] === close) {
      i++;
      return;
    }
    for (;;) {
      item();
      skipSpace();
      if (text[i] === close) {
        i++;
        return;
      }
      if (text[i] !== ',') fail(`expected "," or "${close}", ${describeHere()}`);
      i++;
      skipSpace();
      if (text[i] === close) fail(`trailing comma before "${close}"`);
    }
  };
  try {
    value();
    skipSpace();
    if (i < text.length) fail(`unexpected ${JSON.stringify(text[i])} after the end of the JSON value`);
    return undefined;
  } catch (error) {
    if (error instanceof Found) return error.problem;
    throw error;
  }
}
