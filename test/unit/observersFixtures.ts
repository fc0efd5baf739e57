import type { RunEvent } from '../../src/run/runEvents.js';
import type { RunResult } from '../../src/run/runResult.js';
import type { Host, Job } from '../../src/schedule/types.js';

/** A two-job run on three hosts, shared by the observer tests. */

export const HELLO = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.1.drv';
export const APP = '/nix/store/abcdfghijklmnpqrsvwxyz0123456789-app-1.0.drv';

function job(id: string, name: string, duration: number, deps: string[]): Job {
  return { id, name, system: 'x86_64-linux', requiredFeatures: [], duration, estimateSource: 'rules', deps, preferLocalBuild: false, isBuiltin: false };
}

function host(id: string, maxJobs: number, speedFactor: number): Host {
  return { id, systems: ['x86_64-linux'], supportedFeatures: [], mandatoryFeatures: [], maxJobs, speedFactor, isLocal: id === 'local' };
}

export const jobs: Job[] = [job(HELLO, 'hello-2.12.1', 90, []), job(APP, 'app-1.0', 30, [HELLO])];
export const hosts: Host[] = [host('local', 0, 1), host('ruby', 2, 1), host('kana', 1, 2)];

/**
 * hello builds on ruby, app fails on kana after ruby went down. `log` lines
 * are what the executor prints around the events, at the same moments.
 */
export const script: Array<{ at: number; event?: RunEvent; log?: string }> = [
  { at: 0.1, event: { type: 'jobStarted', time: 0.1, jobId: HELLO, name: 'hello-2.12.1', host: 'ruby', attempt: 1 } },
  { at: 0.5, event: { type: 'buildLog', time: 0.5, jobId: HELLO, host: 'ruby', line: 'compiling hello.c' } },
  { at: 42.3, event: { type: 'jobFinished', time: 42.3, jobId: HELLO, name: 'hello-2.12.1', host: 'ruby', status: 'built', seconds: 42.2 } },
  { at: 42.4, event: { type: 'jobStarted', time: 42.4, jobId: APP, name: 'app-1.0', host: 'kana', attempt: 1 } },
  { at: 42.9, event: { type: 'buildLog', time: 42.9, jobId: APP, host: 'kana', line: 'app.c:3: error: oops' } },
  { at: 43, log: 'offload: ruby is down (connection lost); its jobs go to other machines; retrying it in 30 s' },
  { at: 43, event: { type: 'hostDown', time: 43, host: 'ruby', reason: 'connection lost' } },
  { at: 43.4, log: `offload: building ${APP} on kana failed: builder failed with exit code 3` },
  { at: 43.4, log: 'last 1 log lines of app-1.0:' },
  { at: 43.4, log: '  app.c:3: error: oops' },
  { at: 43.4, event: { type: 'jobFinished', time: 43.4, jobId: APP, name: 'app-1.0', host: 'kana', status: 'failed', seconds: 1, error: 'builder failed with exit code 3' } },
];

export const result: RunResult = {
  records: [
    { drvPath: HELLO, name: 'hello-2.12.1', host: 'ruby', status: 'built', start: 0.1, end: 42.3, attempts: 1, sent: [], substituted: [] },
    { drvPath: APP, name: 'app-1.0', host: 'kana', status: 'failed', start: 42.4, end: 43.4, attempts: 1, error: 'builder failed with exit code 3', sent: [], substituted: [] },
  ],
  outputs: {},
  makespan: 43.4,
  interrupted: false,
};

/** A stream stand-in that keeps what was written. */
export function capture(isTTY = false) {
  let text = '';
  return {
    isTTY,
    columns: 100,
    rows: 30,
    write(chunk: string) {
      text += chunk;
      return true;
    },
    text: () => text,
    lines: () => text.split('\n').filter((l) => l !== ''),
  };
}
