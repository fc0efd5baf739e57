import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { referenceOrder } from '../../src/run/referenceOrder.js';

const item = (path: string, references: string[] = []) => ({ path, references });

describe('referenceOrder', () => {
  it('puts every path after the paths it references', () => {
    const ordered = referenceOrder([item('top', ['mid', 'top']), item('mid', ['leaf', 'elsewhere']), item('leaf'), item('other')]);
    expect(ordered.map((i) => i.path)).toEqual(['leaf', 'mid', 'top', 'other']);
  });

  it('keeps every item once, dependencies first, for random DAGs', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.nat(), { maxLength: 4 }), { minLength: 1, maxLength: 40 }), (refs) => {
        // Item i references only items with a smaller index: a DAG, shuffled by reversing.
        const items = refs.map((r, i) => item(`p${i}`, i === 0 ? [] : r.map((n) => `p${n % i}`))).reverse();
        const ordered = referenceOrder(items);
        expect(new Set(ordered.map((i) => i.path)).size).toBe(items.length);
        const position = new Map(ordered.map((i, n) => [i.path, n]));
        for (const i of ordered) for (const r of i.references) expect(position.get(r)!).toBeLessThan(position.get(i.path)!);
      }),
    );
  });

  it('survives a chain far deeper than the JS stack and a cycle', () => {
    const chain = Array.from({ length: 100_000 }, (_, i) => item(`c${i}`, i + 1 < 100_000 ? [`c${i + 1}`] : []));
    expect(referenceOrder(chain)[0]!.path).toBe('c99999');
    expect(referenceOrder([item('a', ['b']), item('b', ['a'])]).map((i) => i.path)).toEqual(['b', 'a']);
  });
});
