import { describe, expect, it } from 'vitest';
import { logPrefix } from '../../src/report/logger.js';
import { BuildLog } from '../../src/run/buildLog.js';

describe('BuildLog', () => {
  it('splits whole lines, however the chunks are cut', () => {
    const log = new BuildLog();
    log.write('conf');
    log.write('iguring\r\nmak');
    log.write(Buffer.from('e\n\nlast'));
    expect(log.lastLines()).toEqual(['configuring', 'make', '']);
    log.end();
    expect(log.lastLines().at(-1)).toBe('last');
  });

  it('keeps the last lines for a failure report', () => {
    const log = new BuildLog(3);
    for (let i = 1; i <= 10; i++) log.write(`line ${i}\n`);
    expect(log.lastLines()).toEqual(['line 8', 'line 9', 'line 10']);
  });

  it('is shown on stderr after the host and derivation name', () => {
    expect(`${logPrefix('ruby', 'hello-2.12.1')}configuring`).toBe('[ruby] hello-2.12.1> configuring');
  });
});
