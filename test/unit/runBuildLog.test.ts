import { describe, expect, it } from 'vitest';
import { BuildLog, logPrefix } from '../../src/run/buildLog.js';

describe('BuildLog', () => {
  it('prefixes whole lines, however the chunks are cut', () => {
    const out: string[] = [];
    const log = new BuildLog(logPrefix('ruby', 'hello-2.12.1'), (l) => out.push(l));
    log.write('conf');
    log.write('iguring\r\nmak');
    log.write(Buffer.from('e\n\nlast'));
    expect(out).toEqual(['[ruby] hello-2.12.1> configuring', '[ruby] hello-2.12.1> make', '[ruby] hello-2.12.1> ']);
    log.end();
    expect(out.at(-1)).toBe('[ruby] hello-2.12.1> last');
  });

  it('keeps the last lines for a failure report', () => {
    const log = new BuildLog('', () => undefined, 3);
    for (let i = 1; i <= 10; i++) log.write(`line ${i}\n`);
    expect(log.lastLines()).toEqual(['line 8', 'line 9', 'line 10']);
  });
});
