/**
 * OpenSSH's time format (misc.c convtime): a number of seconds, or a run of
 * number+unit pairs (s, m, h, d, w, either case) such as `1m30s`. Returns
 * seconds, or undefined when the text is not a time.
 */
export function parseSshTime(text: string): number | undefined {
  if (!/^(\d+[smhdwSMHDW]?)+$/.test(text)) return undefined;
  const unit: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
  let total = 0;
  for (const [, digits, suffix] of text.matchAll(/(\d+)([smhdwSMHDW]?)/g)) {
    total += Number(digits) * unit[suffix!.toLowerCase()]!;
  }
  return Number.isSafeInteger(total) ? total : undefined;
}
