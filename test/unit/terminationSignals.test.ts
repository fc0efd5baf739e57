import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { onTerminationSignals, type TerminationSignal } from '../../src/cli/terminationSignals.js';

function listen() {
  const emitter = new EventEmitter();
  const stops: TerminationSignal[] = [];
  const exits: number[] = [];
  const said: string[] = [];
  const off = onTerminationSignals((s) => stops.push(s), (m) => said.push(m), {
    emitter: emitter as unknown as NodeJS.Process,
    exit: (code) => exits.push(code),
  });
  return { emitter, stops, exits, said, off };
}

describe('termination signals', () => {
  it('stops cleanly on the first SIGINT and exits at once with 130 on the second', () => {
    const { emitter, stops, exits, said } = listen();
    emitter.emit('SIGINT');
    expect(stops).toEqual(['SIGINT']);
    expect(exits).toEqual([]);
    expect(said).toEqual(['interrupted; stopping the builds and closing connections (interrupt again to exit at once)']);
    emitter.emit('SIGINT');
    expect(stops).toEqual(['SIGINT']);
    expect(exits).toEqual([130]);
    expect(said[1]).toBe('interrupted again; exiting now without cleaning up');
  });

  it('treats SIGTERM after SIGINT (and the other way round) as the second interrupt', () => {
    const a = listen();
    a.emitter.emit('SIGTERM');
    a.emitter.emit('SIGINT');
    expect(a.stops).toEqual(['SIGTERM']);
    expect(a.exits).toEqual([130]);
  });

  it('stops listening when asked', () => {
    const { emitter, off } = listen();
    off();
    expect(emitter.listenerCount('SIGINT') + emitter.listenerCount('SIGTERM')).toBe(0);
  });
});
