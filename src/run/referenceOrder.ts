/**
 * Paths in an order where each comes after the paths it references (among
 * those given), as a store must receive them: Nix registers a path only when
 * its references are valid. Ties keep the given order. Iterative, so a long
 * chain of references cannot exhaust the stack; a reference cycle between
 * different paths (which no store can hold) ends in the given order.
 */
export function referenceOrder<T extends { path: string; references: readonly string[] }>(items: readonly T[]): T[] {
  const byPath = new Map(items.map((item) => [item.path, item]));
  const placed = new Set<string>();
  const visiting = new Set<string>();
  const ordered: T[] = [];
  for (const root of items) {
    if (placed.has(root.path)) continue;
    const stack: Array<{ item: T; next: number }> = [{ item: root, next: 0 }];
    visiting.add(root.path);
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      const refs = frame.item.references;
      let descended = false;
      while (frame.next < refs.length) {
        const ref = byPath.get(refs[frame.next++]!);
        if (ref === undefined || placed.has(ref.path) || visiting.has(ref.path)) continue;
        visiting.add(ref.path);
        stack.push({ item: ref, next: 0 });
        descended = true;
        break;
      }
      if (descended) continue;
      stack.pop();
      visiting.delete(frame.item.path);
      placed.add(frame.item.path);
      ordered.push(frame.item);
    }
  }
  return ordered;
}
