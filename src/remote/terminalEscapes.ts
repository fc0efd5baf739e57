/**
 * Text a builder sends (build logs, error messages, probe output) reaches the
 * user's terminal, so it must not drive the terminal: OSC 52 writes the
 * clipboard, OSC 0 sets the window title, DCS and cursor movement rewrite
 * what is on screen. Like Nix's `filterANSIEscapes`, colours (SGR: `ESC [ … m`)
 * may stay and every other escape sequence goes; unlike it, the payload of
 * string sequences (OSC, DCS, SOS, PM, APC) goes too, the C1 forms of the
 * introducers (U+009B …) are recognised, and every control character but tab
 * and newline is dropped (carriage return and backspace overwrite text,
 * BEL rings).
 */

const ESC = 0x1b;
const BEL = 0x07;
const TAB = 0x09;
const NEWLINE = 0x0a;
const DEL = 0x7f;
/** C1 controls, as UTF-8 decoding yields them. */
const C1_CSI = 0x9b;
const C1_ST = 0x9c;
const C1_STRINGS = new Set([0x90, 0x98, 0x9d, 0x9e, 0x9f]); // DCS, SOS, OSC, PM, APC
/** After ESC: the introducers of string sequences (DCS P, SOS X, OSC ], PM ^, APC _). */
const STRING_INTRODUCERS = new Set(['P', 'X', ']', '^', '_'].map((c) => c.charCodeAt(0)));

/** Keeps SGR colours when `keepColours`, drops every other escape and control character. */
export function filterAnsiEscapes(text: string, { keepColours }: { keepColours: boolean }): string {
  if (!needsFiltering(text)) return text;
  let out = '';
  let i = 0;
  const n = text.length;
  while (i < n) {
    const code = text.charCodeAt(i);
    if (code === ESC || code === C1_CSI || C1_STRINGS.has(code)) {
      const c1 = code !== ESC;
      const kind = c1 ? code : i + 1 < n ? text.charCodeAt(i + 1) : -1;
      const start = i;
      i += c1 ? 1 : Math.min(2, n - i);
      if (kind === 0x5b || kind === C1_CSI) {
        const end = csiEnd(text, i);
        if (keepColours && isSgr(text, i, end)) out += `\x1b[${text.slice(i, end + 1)}`;
        i = end + 1;
      } else if (STRING_INTRODUCERS.has(kind) || C1_STRINGS.has(kind)) {
        i = stringEnd(text, i);
      } else if (!c1 && kind >= 0x20 && kind <= 0x2f) {
        // nF escapes (character sets: ESC ( B): intermediates, then one final byte.
        while (i < n && text.charCodeAt(i) >= 0x20 && text.charCodeAt(i) <= 0x2f) i++;
        if (i < n && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x7e) i++;
      }
      // Anything else after ESC (ESC c resets the terminal, ESC 7/8 move the cursor) was taken with it.
      if (i <= start) i = start + 1;
      continue;
    }
    if ((code < 0x20 && code !== TAB && code !== NEWLINE) || (code >= DEL && code <= 0x9f)) {
      i++;
      continue;
    }
    out += text[i];
    i++;
  }
  return out;
}

/** Drops SGR colours from text that went through filterAnsiEscapes with keepColours. */
export function stripColours(text: string): string {
  return text.includes('\x1b') ? text.replace(/\x1b\[[0-9;:]*m/g, '') : text;
}

/** Text that showed colours ends by resetting them, so a builder's red never bleeds into offload's lines. */
export function closeColours(text: string): string {
  return text.includes('\x1b[') ? `${text}\x1b[0m` : text;
}

/** The fast path: most log lines are plain printable text. */
function needsFiltering(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if ((code < 0x20 && code !== TAB && code !== NEWLINE) || (code >= DEL && code <= 0x9f)) return true;
  }
  return false;
}

/** Index of a CSI's final byte (0x40–0x7e), or of where it stops being a CSI (then dropped as garbage). */
function csiEnd(text: string, from: number): number {
  let i = from;
  while (i < text.length && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x3f) i++;
  while (i < text.length && text.charCodeAt(i) >= 0x20 && text.charCodeAt(i) <= 0x2f) i++;
  if (i < text.length && text.charCodeAt(i) >= 0x40 && text.charCodeAt(i) <= 0x7e) return i;
  return i - 1;
}

/** SGR: parameters of digits, `;` and `:` only (no private `?`/`>` forms, no intermediates), final `m`. */
function isSgr(text: string, from: number, end: number): boolean {
  return end < text.length && text.charCodeAt(end) === 0x6d && /^[0-9;:]*$/.test(text.slice(from, end));
}

/**
 * Just past the string terminator (BEL, ESC \, or C1 ST); an ESC that starts
 * anything else ends the string, as in a terminal, and is read as a new
 * sequence. An unterminated string runs to the end of the text.
 */
function stringEnd(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === BEL || code === C1_ST) return i + 1;
    if (code === ESC) return text.charCodeAt(i + 1) === 0x5c ? i + 2 : i;
  }
  return text.length;
}
