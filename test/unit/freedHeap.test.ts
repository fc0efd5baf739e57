import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime !== undefined;

/**
 * In a fresh process with glibc's default malloc settings: the size of the
 * main heap (MiB) before an 8 MiB buffer, with it, and after it was freed
 * and collected; `keep` calls keepFreedHeap (and collects) first.
 */
function heapAroundBuffer(keep: boolean): { start: number; holding: number; freed: number } {
  const script = `
    import { readFileSync } from 'node:fs';
    import { keepFreedHeap } from ${JSON.stringify(new URL('../../src/remote/freedHeap.ts', import.meta.url).pathname)};
    const heapMiB = () => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) .*\\[heap\\]$/m.exec(readFileSync('/proc/self/maps', 'utf8'));
      return m ? (parseInt(m[2], 16) - parseInt(m[1], 16)) / 2 ** 20 : 0;
    };
    // A collection frees an ArrayBuffer's memory on a background thread, a moment after it ends.
    const collect = async () => {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 50));
    };
    if (${keep}) keepFreedHeap();
    await collect();
    const start = heapMiB();
    let buffer = Buffer.allocUnsafeSlow(8 * 2 ** 20).fill(1);
    const holding = heapMiB();
    buffer = undefined;
    await collect();
    console.log(JSON.stringify({ start, holding, freed: heapMiB() }));`;
  const env = { ...process.env };
  delete env.GLIBC_TUNABLES;
  delete env.MALLOC_TRIM_THRESHOLD_;
  delete env.MALLOC_MMAP_THRESHOLD_;
  const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { env, encoding: 'utf8' });
  return JSON.parse(out) as { start: number; holding: number; freed: number };
}

describe('keepFreedHeap', () => {
  it.skipIf(!glibc)('blocks of several MiB come from the heap and stay there once freed, for the next ones', () => {
    // Without it, glibc maps such a block on its own and unmaps it when freed: the heap never holds it.
    const plain = heapAroundBuffer(false);
    expect(plain.holding - plain.start).toBeLessThan(1);
    const kept = heapAroundBuffer(true);
    expect(kept.holding - kept.start).toBeGreaterThanOrEqual(7);
    expect(kept.freed).toBeGreaterThanOrEqual(kept.holding);
  });
});
