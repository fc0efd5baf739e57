import stringWidth from 'string-width';
import wrapAnsi from 'wrap-ansi';

/** How a table meets a window narrower than its natural width. */
export interface TableFit {
  /** Columns on screen; undefined = natural width (pipes and files get whole lines). */
  width?: number;
  /** Headers of columns whose cells may wrap onto more lines, at spaces and commas. */
  wrap?: readonly string[];
  /** Headers of columns that leave the table, first one first, when wrapping alone cannot fit. */
  dropOrder?: readonly string[];
  /** Styles one cell's text (colour, bold) after layout, so escape codes never count as width. */
  style?: (row: number, column: number, text: string) => string;
}

const GAP = 2;
/** A wrapped column is at least as wide as its header and its longest word, up to this many columns. */
const MAX_WORD_WIDTH = 20;
const MIN_WRAP_WIDTH = 10;

/**
 * Left-aligned text columns; numeric columns can be right-aligned. Widths are
 * display widths (string-width: wide characters take two columns, escape codes
 * none). Given a window width, wrap columns narrow first, then columns leave
 * in `dropOrder`; what they held follows the table, one line per row.
 */
export function renderTable(header: string[], rows: string[][], rightAligned: ReadonlySet<number> = new Set(), fit: TableFit = {}): string {
  const natural = header.map((h, i) => Math.max(stringWidth(h), ...rows.map((r) => stringWidth(r[i] ?? ''))));
  const { shown, widths } = layout(header, rows, natural, fit);
  const style = fit.style ?? ((_row: number, _column: number, text: string) => text);
  const line = (cells: string[], row: number | undefined): string[] => {
    const wrapped = shown.map((c) => (stringWidth(cells[c] ?? '') <= widths[c]! ? [cells[c] ?? ''] : wrapCell(cells[c] ?? '', widths[c]!)));
    const height = Math.max(...wrapped.map((w) => w.length));
    const out: string[] = [];
    for (let k = 0; k < height; k++) {
      const parts = shown.map((c, j) => {
        const text = wrapped[j]![k] ?? '';
        const padding = ' '.repeat(Math.max(0, widths[c]! - stringWidth(text)));
        const styled = row === undefined || text === '' ? text : style(row, c, text);
        return rightAligned.has(c) ? padding + styled : styled + padding;
      });
      out.push(parts.join(' '.repeat(GAP)).trimEnd());
    }
    return out;
  };
  const lines = [...line(header, undefined), ...rows.flatMap((r, i) => line(r, i))];
  const dropped = header.map((_, i) => i).filter((i) => !shown.includes(i));
  if (dropped.length > 0) lines.push('', ...droppedCells(header, rows, dropped, fit.width!));
  return lines.join('\n');
}

/** What left the table is still shown: one line per row, `first cell: column value; …`, wrapped to the window. */
function droppedCells(header: string[], rows: string[][], dropped: number[], width: number): string[] {
  const out: string[] = [];
  for (const row of rows) {
    const parts = dropped.filter((c) => !EMPTY_CELLS.has(row[c] ?? '')).map((c) => `${header[c]!.toLowerCase()} ${row[c]}`);
    if (parts.length === 0) continue;
    const text = wrapAnsi(`${row[0]}: ${parts.join('; ')}`, Math.max(MIN_WRAP_WIDTH, width - 2), { hard: true, trim: true });
    out.push(...text.split('\n').map((l, i) => (i === 0 ? l : `  ${l}`)));
  }
  return out;
}

const EMPTY_CELLS = new Set(['', '-']);

function layout(header: string[], rows: string[][], natural: number[], fit: TableFit): { shown: number[]; widths: number[] } {
  let shown = header.map((_, i) => i);
  const widths = [...natural];
  const total = (cols: number[]) => cols.reduce((sum, c) => sum + natural[c]!, 0) + GAP * Math.max(0, cols.length - 1);
  if (fit.width === undefined || total(shown) <= fit.width) return { shown, widths };
  const wraps = new Set((fit.wrap ?? []).map((h) => header.indexOf(h)).filter((i) => i >= 0));
  const drops = (fit.dropOrder ?? []).map((h) => header.indexOf(h)).filter((i) => i >= 0);
  const longestWord = (c: number) => Math.max(0, ...[header, ...rows].flatMap((r) => (r[c] ?? '').split(/(?<=[ ,])/).map((w) => stringWidth(w.trimEnd()))));
  const minimum = (c: number) => Math.min(natural[c]!, Math.max(stringWidth(header[c]!), MIN_WRAP_WIDTH, Math.min(longestWord(c), MAX_WORD_WIDTH)));
  for (;;) {
    const wrapping = shown.filter((c) => wraps.has(c));
    const fixed = shown.filter((c) => !wraps.has(c));
    const room = fit.width - fixed.reduce((sum, c) => sum + natural[c]!, 0) - GAP * (shown.length - 1);
    const needed = wrapping.reduce((sum, c) => sum + minimum(c), 0);
    const next = drops.find((c) => shown.includes(c));
    if (room >= needed || next === undefined) {
      const shares = shareRoom(
        wrapping.map((c) => natural[c]!),
        wrapping.map(minimum),
        room,
      );
      wrapping.forEach((c, k) => (widths[c] = shares[k]!));
      return { shown, widths };
    }
    shown = shown.filter((c) => c !== next);
  }
}

/**
 * Splits `room` among columns: each gets its minimum, then narrow columns
 * take all they need and wide ones share what is left equally.
 */
function shareRoom(natural: readonly number[], minimum: readonly number[], room: number): number[] {
  const out = [...minimum];
  let left = Math.max(0, room - minimum.reduce((a, b) => a + b, 0));
  const order = natural.map((n, i) => ({ extra: n - minimum[i]!, i })).sort((a, b) => a.extra - b.extra);
  order.forEach(({ extra, i }, k) => {
    const share = Math.floor(left / (order.length - k));
    const take = Math.min(extra, share);
    out[i]! += take;
    left -= take;
  });
  return out;
}

/** Breaks after spaces and commas (lists like `x86_64-linux,aarch64-linux`); a longer word is cut hard. */
function wrapCell(text: string, width: number): string[] {
  const lines: string[] = [];
  let current = '';
  for (const word of text.split(/(?<=[ ,])/)) {
    if (stringWidth((current + word).trimEnd()) <= width) {
      current += word;
      continue;
    }
    if (current.trim() !== '') lines.push(current.trimEnd());
    if (stringWidth(word.trimEnd()) <= width) {
      current = word;
      continue;
    }
    const pieces = wrapAnsi(word.trimEnd(), width, { hard: true, trim: false, wordWrap: false }).split('\n');
    lines.push(...pieces.slice(0, -1));
    current = pieces.at(-1)! + (word.endsWith(' ') ? ' ' : '');
  }
  if (current.trim() !== '' || lines.length === 0) lines.push(current.trimEnd());
  return lines;
}

/** Prose around a table on a terminal: lines wider than the window wrap at spaces (none without a width). */
export function wrapLongLines(text: string, width: number | undefined): string {
  if (width === undefined) return text;
  return text
    .split('\n')
    .map((line) => (stringWidth(line) <= width ? line : wrapAnsi(line, width, { hard: true })))
    .join('\n');
}
