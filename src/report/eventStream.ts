import { stripColours } from '../remote/terminalEscapes.js';
import type { RunEvent } from '../run/runEvents.js';
import type { RunResult } from '../run/runResult.js';
import { runResultJson } from './runResultJson.js';

/**
 * `offload build --json-events`: NDJSON on stdout, one object per run event
 * as the executor reports it (`type` is jobStarted, jobFinished, jobSkipped,
 * hostDown, hostBack, buildLog, transferStarted, transferProgress or
 * transferFinished; `time` is seconds since the start, to the
 * millisecond), then exactly one last line `{"type":"result", …}` holding
 * what `--json` prints. A consumer reads lines until the result line.
 */

export function eventJsonLine(event: RunEvent): string {
  const out: Record<string, unknown> = { ...event, time: millis(event.time) };
  if (event.type === 'jobFinished') out.seconds = millis(event.seconds);
  if (event.type === 'buildLog') out.line = stripColours(event.line);
  return `${JSON.stringify(out)}\n`;
}

export function resultJsonLine(result: RunResult): string {
  return `${JSON.stringify({ type: 'result', ...runResultJson(result) })}\n`;
}

function millis(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
