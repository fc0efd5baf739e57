import type { RunResult } from '../run/runResult.js';

/** What `offload build --json` prints (and the `result` line of `--json-events`). */
export function runResultJson(result: RunResult) {
  return {
    outputs: result.outputs,
    jobs: result.records.map((r) => ({
      drvPath: r.drvPath,
      name: r.name,
      action: r.action ?? 'build',
      ...(r.transfer ? { from: r.transfer.from, bytes: r.transfer.bytes, paths: r.transfer.paths } : {}),
      host: r.host,
      status: r.status,
      start: round(r.start),
      end: round(r.end),
      attempts: r.attempts,
      ...(r.error !== undefined ? { error: r.error } : {}),
      ...(r.failure !== undefined ? { failure: r.failure } : {}),
      sent: r.sent,
      substituted: r.substituted,
    })),
    makespan: round(result.makespan),
    interrupted: result.interrupted,
    outLinks: (result.outLinks ?? []).map(({ link, drvPath, output, path }) => ({ link, drvPath, output, path })),
    ...(result.stuck ? { stuck: result.stuck } : {}),
    ...(result.hosts ? { hosts: result.hosts } : {}),
  };
}

function round(t: number | undefined): number | null {
  return t === undefined ? null : Math.round(t * 1000) / 1000;
}
