/**
 * A binary min-heap of small integers (job or host indices) ordered by a
 * caller-supplied `before`; the scheduler keeps its keys in typed arrays.
 */
export class IndexHeap {
  private items: number[] = [];
  constructor(private readonly before: (a: number, b: number) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): number | undefined {
    return this.items[0];
  }

  push(x: number): void {
    const items = this.items;
    let i = items.push(x) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(x, items[parent]!)) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = x;
  }

  pop(): number | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    let i = 0;
    const n = items.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && this.before(items[r]!, items[l]!) ? r : l;
      if (!this.before(items[child]!, last)) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = last;
    return top;
  }
}
