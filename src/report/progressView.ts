import stringWidth from 'string-width';
import { formatBytes, formatRate } from './byteSize.js';
import { formatDuration } from './duration.js';
import type { TransferState } from './transferProgress.js';

/**
 * The live view on a terminal: a status line and one line per host with what
 * it is building. renderProgress is pure (state in, lines out) so it is
 * tested without a terminal; LiveView only decides when to redraw and how.
 *
 * Widths count UTF-16 code units: derivation names and host names are ASCII
 * (Nix restricts derivation names), and the view itself uses ASCII plus `…`
 * and `·`, both one column wide.
 */

export interface RunningJob {
  name: string;
  /** Seconds since this build started. */
  elapsed: number;
  /** Expected seconds on this host, if known. */
  estimate?: number;
}

export interface HostProgress {
  id: string;
  slots: number;
  running: readonly RunningJob[];
  /** Why the host is out of rotation, when it is. */
  down?: string;
  /** The builder's own load, as last read (`cpu 12% mem 0% io 1% · store 52% free`). */
  pressure?: string;
  /** Why it is loaded (over a limit): it gets no new job meanwhile. */
  loaded?: string;
}

export interface ProgressState {
  hosts: readonly HostProgress[];
  counts: { done: number; running: number; queued: number; failed: number; skipped: number };
  /** Seconds until the run is expected to end. */
  etaSeconds?: number;
  /** Seconds since the run started. */
  elapsed?: number;
  /** Store paths moving between stores, long enough to be worth a line. */
  transfers?: readonly TransferState[];
}

export interface RenderOptions {
  /** Terminal columns. Lines are at most width - 1 long so the cursor never wraps. */
  width: number;
  color?: boolean;
  /** Most lines to draw (terminal rows minus some room for the log above). */
  maxLines?: number;
}

const MIN_NAME = 8;
const ANSI = { reset: '\x1b[0m', bold: '\x1b[1m', dim: '\x1b[2m', red: '\x1b[31m', green: '\x1b[32m', yellow: '\x1b[33m', blue: '\x1b[34m' };
type Style = keyof typeof ANSI;

interface Segment {
  text: string;
  style?: Style;
}

export function renderProgress(state: ProgressState, options: RenderOptions): string[] {
  const width = Math.max(20, Math.floor(options.width)) - 1;
  const hostColumn = Math.min(Math.max(4, ...state.hosts.map((h) => h.id.length)), Math.floor(width / 4));
  const lines = [statusLine(state), ...state.hosts.map((h) => hostLine(h, hostColumn, width)), ...(state.transfers ?? []).map(transferLine)];
  const limit = options.maxLines !== undefined ? Math.max(1, Math.floor(options.maxLines)) : lines.length;
  let shown = lines;
  if (lines.length > limit) {
    const hidden = lines.length - limit + 1;
    shown = [...lines.slice(0, limit - 1), [{ text: `… ${hidden} more host${hidden === 1 ? '' : 's'}`, style: 'dim' }]];
  }
  return shown.map((segments) => paint(fit(segments, width), options.color === true));
}

function statusLine(state: ProgressState): Segment[] {
  const c = state.counts;
  const parts: Segment[] = [
    { text: 'offload', style: 'bold' },
    { text: '  ' },
    { text: `${c.done} done`, style: 'green' },
    { text: ' · ' },
    { text: `${c.running} running`, style: 'yellow' },
    { text: ' · ' },
    { text: `${c.queued} queued`, style: 'blue' },
  ];
  if (c.failed > 0) parts.push({ text: ' · ' }, { text: `${c.failed} failed`, style: 'red' });
  if (c.skipped > 0) parts.push({ text: ' · ' }, { text: `${c.skipped} skipped`, style: 'red' });
  if (state.elapsed !== undefined) parts.push({ text: `  ${formatDuration(state.elapsed)} elapsed`, style: 'dim' });
  if (state.etaSeconds !== undefined) parts.push({ text: `  ETA ${formatDuration(state.etaSeconds)}`, style: 'bold' });
  return parts;
}

function hostLine(host: HostProgress, hostColumn: number, width: number): Segment[] {
  const head: Segment[] = [
    { text: ` ${pad(clipText(host.id, hostColumn), hostColumn)} `, style: 'bold' },
    { text: `${host.running.length}/${host.slots} `, style: host.down ? 'red' : 'dim' },
  ];
  if (host.down !== undefined) return [...head, { text: `down: ${host.down}`, style: 'red' }];
  const pressureNote: Segment[] = host.loaded !== undefined ? [{ text: `  loaded: ${host.loaded}`, style: 'yellow' }] : host.pressure ? [{ text: `  ${host.pressure}`, style: 'dim' }] : [];
  if (host.running.length === 0) return [...head, { text: 'idle', style: 'dim' }, ...pressureNote];
  const room = width - segmentsLength(head) - segmentsLength(pressureNote);
  const jobs = [...host.running].sort((a, b) => b.elapsed - a.elapsed);
  return [...head, ...jobSegments(jobs, room), ...pressureNote];
}

/** ` copy left -> local  412.00 MiB / 1.00 GiB  85.10 MiB/s  ETA 7s` (ASCII: arrows are of ambiguous width). */
function transferLine(t: TransferState): Segment[] {
  const line: Segment[] = [
    { text: ` copy ${t.from} -> ${t.to} `, style: 'bold' },
    { text: ` ${formatBytes(t.bytes)} / ${formatBytes(t.total)}` },
  ];
  if (t.paths > 1) line.push({ text: ` (${t.paths} paths)`, style: 'dim' });
  if (t.rate !== undefined) line.push({ text: `  ${formatRate(t.rate)}`, style: 'dim' });
  if (t.eta !== undefined) line.push({ text: `  ETA ${formatDuration(t.eta)}`, style: 'dim' });
  else line.push({ text: `  ${formatDuration(t.elapsed)}`, style: 'dim' });
  return line;
}

/** As many jobs as fit at a readable name length; the rest become "+N more". */
function jobSegments(jobs: readonly RunningJob[], room: number): Segment[] {
  for (let shown = jobs.length; shown >= 1; shown--) {
    const more = jobs.length - shown;
    const moreText = more > 0 ? `  +${more} more` : '';
    const visible = jobs.slice(0, shown);
    const timings = visible.map(timing);
    // Each job costs its name, a space and its timing; separators ' · ' between jobs.
    const fixed = timings.reduce((n, t) => n + t.length + 1, 0) + 3 * (shown - 1) + moreText.length;
    const names = shareRoom(visible.map((j) => j.name.length), room - fixed);
    if (names.some((n, i) => n < Math.min(MIN_NAME, visible[i]!.name.length)) && shown > 1) continue;
    const out: Segment[] = [];
    visible.forEach((job, i) => {
      if (i > 0) out.push({ text: ' · ', style: 'dim' });
      out.push({ text: clipText(job.name, Math.max(1, names[i]!)) }, { text: ` ${timings[i]}`, style: overdue(job) ? 'yellow' : 'dim' });
    });
    if (moreText) out.push({ text: moreText, style: 'dim' });
    return out;
  }
  return [];
}

/** Splits `room` columns among names: short names take what they need, long ones share the rest equally. */
function shareRoom(lengths: readonly number[], room: number): number[] {
  const out = lengths.map(() => 0);
  const order = lengths.map((len, i) => ({ len, i })).sort((a, b) => a.len - b.len);
  let left = Math.max(0, room);
  order.forEach(({ len, i }, k) => {
    const share = Math.floor(left / (order.length - k));
    out[i] = Math.min(len, share);
    left -= out[i];
  });
  return out;
}

function timing(job: RunningJob): string {
  return job.estimate !== undefined ? `${formatDuration(job.elapsed)}/${formatDuration(job.estimate)}` : formatDuration(job.elapsed);
}

function overdue(job: RunningJob): boolean {
  return job.estimate !== undefined && job.elapsed > job.estimate * 1.25 + 5;
}

/** Cuts segments at `width` columns, ending with `…` when something was cut. */
function fit(segments: Segment[], width: number): Segment[] {
  if (segmentsLength(segments) <= width) return segments;
  const out: Segment[] = [];
  let left = width - 1;
  for (const s of segments) {
    if (left <= 0) break;
    out.push({ ...s, text: s.text.slice(0, left) });
    left -= s.text.length;
  }
  out.push({ text: '…' });
  return out;
}

function paint(segments: Segment[], color: boolean): string {
  return segments.map((s) => (color && s.style && s.text !== '' ? `${ANSI[s.style]}${s.text}${ANSI.reset}` : s.text)).join('');
}

function segmentsLength(segments: Segment[]): number {
  return segments.reduce((n, s) => n + s.text.length, 0);
}

function clipText(text: string, max: number): string {
  if (text.length <= max) return text;
  return max <= 1 ? '…' : `${text.slice(0, max - 1)}…`;
}

function pad(text: string, n: number): string {
  return text + ' '.repeat(Math.max(0, n - text.length));
}

/** Columns on screen (string-width: escape codes take none, wide characters two). */
export function visibleLength(line: string): number {
  return stringWidth(line);
}

/** The terminal LiveView draws on: process.stderr when it is a TTY. */
export interface ViewStream {
  write(chunk: string): unknown;
  columns?: number;
  rows?: number;
  on?(event: 'resize', listener: () => void): unknown;
  off?(event: 'resize', listener: () => void): unknown;
}

const CSI = '\x1b[';
const HIDE_CURSOR = `${CSI}?25l`;
const SHOW_CURSOR = `${CSI}?25h`;

/**
 * Redraws the progress lines in place at the bottom of the output: cursor up
 * over the previous frame, each line followed by erase-to-end-of-line, then
 * erase-below for lines the new frame no longer has, all in a single write so
 * the terminal never shows a half-drawn frame. Draws at most `fps` times a
 * second and only when the text changed. Only for TTYs: callers print plain
 * lines otherwise.
 */
export class LiveView {
  private state: ProgressState | undefined;
  private drawn: string[] = [];
  private lastDraw = -Infinity;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private readonly interval: number;
  private readonly color: boolean;
  private readonly now: () => number;
  private readonly onResize = () => this.draw(true);
  private readonly onExit = () => this.stream.write(SHOW_CURSOR);

  constructor(
    private readonly stream: ViewStream,
    options: { fps?: number; color?: boolean; now?: () => number } = {},
  ) {
    this.interval = 1000 / (options.fps ?? 10);
    this.color = options.color ?? false;
    this.now = options.now ?? (() => performance.now());
    this.stream.write(HIDE_CURSOR);
    this.stream.on?.('resize', this.onResize);
    // If the process dies without stop(), the user's cursor must come back.
    process.once('exit', this.onExit);
  }

  /** Takes the newest state; draws now or at the next frame slot. */
  update(state: ProgressState): void {
    if (this.stopped) return;
    this.state = state;
    const wait = this.lastDraw + this.interval - this.now();
    if (wait <= 0) this.draw(false);
    else this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.draw(false);
    }, wait);
  }

  /** Prints log lines above the view and redraws it below them. */
  log(text: string): void {
    const lines = text.replace(/\n$/, '').split('\n');
    if (this.stopped) {
      this.stream.write(lines.map((l) => `${l}\n`).join(''));
      return;
    }
    const body = lines.map((l) => `${l}${CSI}K\n`).join('');
    this.stream.write(`${this.toFrameStart()}${body}${this.frame(this.currentLines())}`);
  }

  /** Draws the final frame (it stays on screen) and gives the cursor back. */
  stop(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.draw(false);
    this.stopped = true;
    this.stream.off?.('resize', this.onResize);
    process.off('exit', this.onExit);
    this.stream.write(SHOW_CURSOR);
  }

  private draw(force: boolean): void {
    const lines = this.currentLines();
    this.lastDraw = this.now();
    if (!force && sameLines(lines, this.drawn)) return;
    this.stream.write(`${this.toFrameStart()}${this.frame(lines)}`);
  }

  private currentLines(): string[] {
    if (!this.state) return [];
    return renderProgress(this.state, {
      width: this.stream.columns ?? 80,
      color: this.color,
      ...(this.stream.rows !== undefined ? { maxLines: Math.max(3, this.stream.rows - 4) } : {}),
    });
  }

  /**
   * Cursor to the first row of the drawn frame. Rows are counted at the
   * current width: a terminal that got narrower re-wraps the old lines.
   */
  private toFrameStart(): string {
    const width = Math.max(1, this.stream.columns ?? 80);
    const rows = this.drawn.reduce((n, line) => n + Math.max(1, Math.ceil(visibleLength(line) / width)), 0);
    return rows > 0 ? `\r${CSI}${rows}A` : '\r';
  }

  /**
   * Overwrites row by row (erase to end of line after each), then erases
   * below for rows the previous frame had and this one lacks: nothing is
   * blanked before it is redrawn, so nothing flickers.
   */
  private frame(lines: string[]): string {
    this.drawn = lines;
    return `${lines.map((line) => `${line}${CSI}K\n`).join('')}${CSI}J`;
  }
}

function sameLines(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((line, i) => line === b[i]);
}
