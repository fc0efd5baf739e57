import { describe, expect, it } from 'vitest';
import { HostKeyMismatchError } from '../../src/remote/sshErrors.js';
import { HostRotation } from '../../src/run/hostRotation.js';
import type { RunEvent } from '../../src/run/runEvents.js';
import { waitFor } from '../support/waitFor.js';
import { FakeHosts } from './runFakes.js';

function rotation(options = { failureThreshold: 2, backoffSeconds: 0.1, maxBackoffSeconds: 1 }, reserves: string[] = []) {
  const hosts = new FakeHosts(['ruby', 'kana']);
  const available: string[] = [];
  const log: string[] = [];
  const events: RunEvent[] = [];
  const takenOut: string[] = [];
  let resumes = 0;
  const errors: unknown[] = [];
  const start = Date.now();
  const r = new HostRotation({
    setHostAvailable: (host, ok) => available.push(`${host}:${ok}`),
    channels: hosts,
    options,
    reserves,
    log: (line) => log.push(line),
    now: () => (Date.now() - start) / 1000,
    onEvent: (e) => events.push(e),
    onTakenOut: (host) => takenOut.push(host),
    resumeRun: () => resumes++,
    onInternalError: (e) => errors.push(e),
  });
  return { r, hosts, available, log, events, takenOut, errors, resumes: () => resumes };
}

describe('HostRotation', () => {
  it('keeps a host after one failure and takes it out after the second, bringing in the reserves', () => {
    const { r, hosts, available, takenOut, events } = rotation(undefined, ['kana']);
    r.hostFailed('ruby', 'lost', 'reset');
    expect(available).toEqual([]);
    expect(hosts.dropped).toEqual(['ruby']);
    r.hostFailed('ruby', 'lost', 'reset again');
    expect(available).toEqual(['ruby:false', 'kana:true']);
    expect(takenOut).toEqual(['ruby']);
    expect(events).toEqual([expect.objectContaining({ type: 'hostDown', host: 'ruby', reason: 'reset again' })]);
    r.stop();
  });

  it('reconnects a host when its back-off ends, and doubles the back-off when it is still unreachable', async () => {
    const { r, hosts, available, log, events } = rotation();
    hosts.unreachable.add('ruby');
    r.hostFailed('ruby', 'unreachable', 'no route');
    // The first reconnect fails, which takes ruby out again; the second finds it reachable.
    await waitFor(() => log.filter((l) => l.includes('is down')).length === 2);
    hosts.unreachable.delete('ruby');
    await waitFor(() => events.some((e) => e.type === 'hostBack'));
    r.stop();
    expect(log.filter((l) => l.includes('is down'))).toEqual([
      'offload: ruby is down (no route); its jobs go to other machines; retrying it in 0.1 s',
      'offload: ruby is down (cannot reach ruby at 127.0.0.1:22: connection refused); its jobs go to other machines; retrying it in 0.2 s',
    ]);
    expect(log.at(-1)).toBe('offload: ruby is back in rotation');
    expect(events.map((e) => e.type)).toEqual(['hostDown', 'hostDown', 'hostBack']);
    expect(available).toEqual(['ruby:false', 'ruby:false', 'ruby:true']);
    expect(r.troubles(0)).toEqual([expect.objectContaining({ host: 'ruby', failures: 2, timesOut: 2 })]);
  });

  it('never brings back a host whose key is wrong', async () => {
    const { r, available, log } = rotation();
    const error = new HostKeyMismatchError('ruby', '127.0.0.1', 22, 'SHA256:x', ['SHA256:y'], 'known_hosts');
    r.hostDown('ruby', error);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(r.pendingReconnects()).toEqual([]);
    r.stop();
    expect(available).toEqual(['ruby:false']);
    expect(log.at(-1)).toMatch(/^offload: ruby is down \(.*\); its jobs go to other machines; not retried in this run$/);
  });

  it('ignores the local machine and anything after stop', () => {
    const { r, available, log } = rotation();
    r.hostFailed('local', 'unreachable', 'no');
    r.stop();
    r.hostFailed('ruby', 'unreachable', 'no');
    expect([available, log]).toEqual([[], []]);
  });
});
