import { describe, expect, it } from 'vitest';
import { OffloadError } from '../../src/errors/offloadError.js';
import { BuildStatus, buildStatusName, type BuildResult } from '../../src/remote/buildResult.js';
import { ServeConnectionLostError } from '../../src/remote/serveClient.js';
import { HostUnreachableError } from '../../src/remote/sshErrors.js';
import { classifyBuildResult, classifyError, decide, defaultRetryLimits } from '../../src/run/failure.js';

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
    });
    expect(classifyBuildResult(result(BuildStatus.TransientFailure)).kind).toBe('transient');
    expect(classifyBuildResult(result(BuildStatus.TimedOut)).kind).toBe('buildFailed');
  });

  it('requeues lost connections and unusable hosts, fails other offload errors, leaves bugs alone', () => {
    expect(classifyError(new ServeConnectionLostError('gone', 'ruby'), false)?.kind).toBe('connectionLost');
    expect(classifyError(new HostUnreachableError('ruby', '127.0.0.1', 22, 'refused'), false)?.kind).toBe('hostUnusable');
    expect(classifyError(new OffloadError('cannot import'), false)?.kind).toBe('jobError');
    expect(classifyError(new TypeError('x is undefined'), false)).toBeUndefined();
    expect(classifyError(new ServeConnectionLostError('closed by offload', 'ruby'), true)).toEqual({ kind: 'interrupted' });
  });

  it('retries transient failures and lost connections a bounded number of times', () => {
    const transient = { kind: 'transient', message: 'm' } as const;
    expect(decide(transient, { transient: 3, connectionLost: 0 }, defaultRetryLimits)).toBe('requeue');
    expect(decide(transient, { transient: 4, connectionLost: 0 }, defaultRetryLimits)).toBe('fail');
    const lost = { kind: 'connectionLost', message: 'm' } as const;
    expect(decide(lost, { transient: 0, connectionLost: 1 }, { transientRetries: 0, connectionRetries: 0 })).toBe('fail');
    expect(decide({ kind: 'buildFailed', message: 'm' }, { transient: 0, connectionLost: 0 }, defaultRetryLimits)).toBe('fail');
  });
});
