import { readFileSync } from 'node:fs';
import { jsonDepthProblem, lineAndColumn } from '../config/jsonSyntax.js';
import { DurationRulesError, parseDurationRules, type DurationRules } from '../schedule/durations.js';

/** `--durations FILE`: the duration rules in durations.json format, read here so the scheduler does no I/O. */
export function loadDurationRules(path: string): DurationRules {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? String(cause);
    throw new DurationRulesError(`cannot read duration rules ${path}: ${code}`, { cause });
  }
  const tooDeep = jsonDepthProblem(text);
  if (tooDeep) {
    const { line, column } = lineAndColumn(text, tooDeep.index);
    throw new DurationRulesError(`duration rules ${path}:${line}:${column}: JSON ${tooDeep.reason}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (cause) {
    throw new DurationRulesError(
      `duration rules ${path} is not valid JSON: ${(cause as Error).message}`,
      { cause },
    );
  }
  return parseDurationRules(data, path, 'rules');
}
