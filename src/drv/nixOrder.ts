/**
 * Nix keeps outputs, input derivations, sources and env in std::map/std::set
 * of std::string, so `.drv` files list them in UTF-8 byte order. That equals
 * code-point order, which differs from JavaScript's UTF-16 order only when a
 * surrogate pair meets a character in U+E000–U+FFFF.
 */
export function compareNixStrings(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/** Lifts surrogates above U+E000–U+FFFF so UTF-16 units compare like code points. */
function codePointRank(unit: number): number {
  return unit >= 0xd800 && unit <= 0xdfff ? unit + 0x2000 : unit >= 0xe000 ? unit - 0x800 : unit;
}

/** Keys come from untrusted text: `__proto__` must become an own property, not a prototype. */
export function setOwn<T>(record: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') {
    Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    record[key] = value;
  }
}

/** Sorted in Nix's byte order without duplicates; already-canonical input (the norm) is returned as is. */
export function canonicalSet(items: string[]): string[] {
  for (let i = 1; i < items.length; i++) {
    if (compareNixStrings(items[i - 1]!, items[i]!) >= 0) {
      return [...new Set(items)].sort(compareNixStrings);
    }
  }
  return items;
}
