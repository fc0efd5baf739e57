import { describe, expect, it } from 'vitest';
import { ExitCode, OffloadError } from '../../src/errors/offloadError.js';
import { BuildStatus, buildStatusName, type BuildResult } from '../../src/remote/buildResult.js';
import { ServeConnectionLostError } from '../../src/remote/serveClient.js';
import { HostUnreachableError } from '../../src/remote/sshErrors.js';
import { classifyBuildResult, classifyError, decide, defaultRetryLimits } from '../../src/run/failure.js';
import { runExitCode, type JobRecord } from '../../src/run/runResult.js';

function result(status: BuildStatus, errorMsg = ''): BuildResult {
  return { status, statusName: buildStatusName(status), errorMsg, timesBuilt: 1, isNonDeterministic: false, startTime: 0, stopTime: 0, builtOutputs: new Map() };
}

describe('classifying a job attempt', () => {
  it('treats built, substituted and already-valid results as success', () => {
    for (const s of [BuildStatus.Built, BuildStatus.Substituted, BuildStatus.AlreadyValid]) expect(classifyBuildResult(result(s)).kind).toBe('built');
  });

  it('keeps the builder message of a failure and separates transient from permanent', () => {
    expect(classifyBuildResult(result(BuildStatus.PermanentFailure, "builder for 'x' failed with exit code 3\n"))).toEqual({
      kind: 'buildFailed',
      message: "PermanentFailure: builder for 'x' failed with exit code 3",
      failure: 'failed',
    });
    expect(classifyBuildResult(result(BuildStatus.TransientFailure)).kind).toBe('transient');
    expect(classifyBuildResult(result(BuildStatus.TimedOut))).toMatchObject({ kind: 'buildFailed', failure: 'timedOut' });
  });

  it("names each failure the way Nix's exit status counts it", () => {
    const kind = (status: BuildStatus, message = '') => (classifyBuildResult(result(status, message)) as { failure?: string }).failure;
    expect(kind(BuildStatus.OutputRejected, "hash mismatch in fixed-output derivation '/nix/store/x.drv':\n  specified: sha256-A")).toBe('hashMismatch');
    expect(kind(BuildStatus.OutputRejected, 'some other rejection')).toBe('other');
    expect(kind(BuildStatus.NotDeterministic)).toBe('notDeterministic');
    expect(kind(BuildStatus.LogLimitExceeded)).toBe('other');
    expect(kind(BuildStatus.InputRejected)).toBe('other');
  });

  it('requeues lost connections and unusable hosts, fails other offload errors, leaves bugs alone', () => {
    expect(classifyError(new ServeConnectionLostError('gone', 'ruby'), false)?.kind).toBe('connectionLost');
    expect(classifyError(new HostUnreachableError('ruby', '127.0.0.1', 22, 'refused'), false)?.kind).toBe('hostUnusable');
    expect(classifyError(new OffloadError('cannot import', ExitCode.badInput), false)?.kind).toBe('jobError');
    expect(classifyError(new TypeError('x is undefined'), false)).toBeUndefined();
    expect(classifyError(new ServeConnectionLostError('closed by offload', 'ruby'), true)).toEqual({ kind: 'interrupted' });
  });

  it("fails at once, without retrying or rebuilding, when a store refused for a reason retrying cannot change", () => {
    const lost = (serverError: string | undefined, host = 'local') =>
      classifyError(new ServeConnectionLostError('Lost the connection', host, serverError !== undefined ? { serverError } : {}), false);
    const refused = lost("cannot add path '/nix/store/abc-top' because it lacks a valid signature");
    expect(refused).toMatchObject({ kind: 'refused' });
    expect((refused as { message: string }).message).toMatch(
      /^the local store refused it for good \(not retried\): cannot add path '\/nix\/store\/abc-top' because it lacks a valid signature; to fix this, add the user to trusted-users/,
    );
    expect(decide(refused!, { transient: 0, connectionLost: 0 }, defaultRetryLimits)).toBe('fail');
    expect(lost('writing to file: No space left on device', 'ruby')).toMatchObject({ kind: 'refused', message: expect.stringMatching(/^the store on ruby refused it for good/) });
    // A server that went away without saying why may come back: that stays a lost connection.
    expect(lost(undefined)?.kind).toBe('connectionLost');
    expect(lost('unexpected end-of-file')?.kind).toBe('connectionLost');
  });

  it('retries transient failures and lost connections a bounded number of times', () => {
    const transient = { kind: 'transient', message: 'm' } as const;
    expect(decide(transient, { transient: 3, connectionLost: 0 }, defaultRetryLimits)).toBe('requeue');
    expect(decide(transient, { transient: 4, connectionLost: 0 }, defaultRetryLimits)).toBe('fail');
    const lost = { kind: 'connectionLost', message: 'm' } as const;
    expect(decide(lost, { transient: 0, connectionLost: 1 }, { transientRetries: 0, connectionRetries: 0 })).toBe('fail');
    expect(decide({ kind: 'buildFailed', message: 'm', failure: 'failed' }, { transient: 0, connectionLost: 0 }, defaultRetryLimits)).toBe('fail');
  });
});

describe("the run's exit status, as Nix's Worker::exitStatus", () => {
  const record = (status: JobRecord['status'], failure?: JobRecord['failure']): JobRecord => ({
    drvPath: '/nix/store/x.drv',
    name: 'x',
    host: 'ruby',
    status,
    attempts: 1,
    sent: [],
    substituted: [],
    ...(failure !== undefined && { failure }),
  });
  const exit = (...records: JobRecord[]) => runExitCode({ records, outputs: {}, makespan: 0, interrupted: false });

  it('0 when everything was built; 100 for a failed build, 101 for a timeout, 102 for a hash mismatch, 103 for both', () => {
    expect(exit(record('built'))).toBe(0);
    expect(exit(record('failed', 'failed'), record('skipped'))).toBe(100);
    expect(exit(record('failed', 'timedOut'))).toBe(101);
    expect(exit(record('failed', 'hashMismatch'))).toBe(102);
    expect(exit(record('failed', 'timedOut'), record('failed', 'hashMismatch'), record('failed', 'failed'))).toBe(103);
    expect(exit(record('failed', 'notDeterministic'))).toBe(104);
  });

  it('1 for a failure that is not a build failure (retries used up, an input not copied, no host left)', () => {
    expect(exit(record('failed', 'other'), record('skipped'))).toBe(1);
    expect(exit(record('failed'))).toBe(1);
    expect(runExitCode({ records: [record('not-started')], outputs: {}, makespan: 0, interrupted: false, stuck: { jobs: ['x'], reason: 'r' } })).toBe(1);
  });
});
