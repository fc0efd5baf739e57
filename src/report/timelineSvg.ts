import { formatDuration } from './duration.js';

/**
 * The timeline picture: one lane per host, split into as many rows as bars
 * overlap there, a bar per derivation. Used for `offload plan --svg` (planned
 * times) and, through renderTimeline, for the run report (actual times with
 * the estimate under each bar). Every string that reaches the SVG comes from
 * .drv files or the machines file, so all of it is escaped.
 */

export interface TimelineAssignment {
  jobId: string;
  host: string;
  start: number;
  end: number;
}

export interface PlanSvgInput {
  assignments: readonly TimelineAssignment[];
  hosts: readonly { id: string; maxJobs: number }[];
  names: ReadonlyMap<string, string>;
  criticalPath: readonly string[];
  makespan: number;
  title?: string;
}

export interface TimelineBar {
  id: string;
  host: string;
  start: number;
  end: number;
  label: string;
  tooltip: string;
  /** Extra CSS classes: `critical`, `failed`, … */
  classes: readonly string[];
  /** Estimated duration, drawn as a thin bar from `start` under the real one. */
  estimate?: number;
}

export interface TimelineModel {
  hosts: readonly { id: string; maxJobs: number }[];
  bars: readonly TimelineBar[];
  makespan: number;
  title?: string;
  /** Legend entries after the bar kinds. */
  notes?: readonly string[];
  legend: readonly { className: string; label: string }[];
  width?: number;
}

const LABEL_WIDTH = 150;
const CHART_WIDTH = 1100;
const MARGIN = 12;
const TITLE_HEIGHT = 28;
const AXIS_HEIGHT = 28;
const LEGEND_HEIGHT = 34;
const LANE_GAP = 6;
const FONT_PX = 11;
/** Average advance of an 11px sans-serif glyph; deliberately generous so labels never spill. */
const CHAR_PX = 6.6;

export function planToSvg(input: PlanSvgInput): string {
  const critical = new Set(input.criticalPath);
  const bars = input.assignments.map((a): TimelineBar => {
    const name = input.names.get(a.jobId) ?? a.jobId;
    const onPath = critical.has(a.jobId);
    return {
      id: a.jobId,
      host: a.host,
      start: a.start,
      end: a.end,
      label: name,
      tooltip: `${name}\n${a.host}: ${formatDuration(a.start)} → ${formatDuration(a.end)} (${formatDuration(a.end - a.start)})${onPath ? '\non the critical path' : ''}\n${a.jobId}`,
      classes: onPath ? ['critical'] : [],
    };
  });
  return renderTimeline({
    hosts: input.hosts,
    bars,
    makespan: input.makespan,
    title: input.title ?? `offload plan — makespan ${formatDuration(input.makespan)}`,
    legend: [
      { className: 'job', label: 'derivation' },
      { className: 'job critical', label: 'critical path' },
    ],
  });
}

export function renderTimeline(model: TimelineModel): string {
  const chartWidth = model.width ?? CHART_WIDTH;
  const span = Math.max(model.makespan, ...model.bars.map((b) => b.end), 1e-9);
  const x = (t: number) => LABEL_WIDTH + (Math.max(0, t) / span) * chartWidth;
  const withEstimates = model.bars.some((b) => b.estimate !== undefined);
  const rowHeight = withEstimates ? 26 : 22;
  const lanes = layoutLanes(model.hosts, model.bars);
  const top = MARGIN + (model.title ? TITLE_HEIGHT : 0);
  const parts: string[] = [];
  let y = top;
  const laneOut: string[] = [];
  lanes.forEach((lane, index) => {
    const height = lane.rows * rowHeight;
    laneOut.push(
      `<g class="lane" data-host="${esc(lane.host)}">`,
      `<rect class="lane-bg${index % 2 ? ' odd' : ''}" x="${MARGIN}" y="${y}" width="${LABEL_WIDTH - MARGIN + chartWidth}" height="${height}"/>`,
      `<text class="host" x="${MARGIN + 4}" y="${y + Math.min(height, rowHeight) / 2 + 4}">${esc(clip(lane.host, (LABEL_WIDTH - MARGIN - 8) / CHAR_PX))}<title>${esc(`${lane.host}: ${lane.slots} slot(s)`)}</title></text>`,
    );
    for (const { bar, row } of lane.placed) laneOut.push(renderBar(bar, x, y + row * rowHeight, rowHeight, withEstimates));
    laneOut.push('</g>');
    y += height + LANE_GAP;
  });
  const chartBottom = y - LANE_GAP;
  const axis = renderAxis(span, x, top, chartBottom);
  const legendY = chartBottom + AXIS_HEIGHT + 8;
  const height = legendY + LEGEND_HEIGHT;
  const width = LABEL_WIDTH + chartWidth + MARGIN;
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="${FONT_PX}">`,
    `<style>${TIMELINE_CSS}</style>`,
    `<rect class="background" x="0" y="0" width="${width}" height="${height}"/>`,
  );
  if (model.title) parts.push(`<text class="title" x="${MARGIN}" y="${MARGIN + 16}">${esc(model.title)}</text>`);
  parts.push(...laneOut, axis, renderLegend(model, withEstimates, legendY));
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

interface Lane {
  host: string;
  slots: number;
  rows: number;
  placed: { bar: TimelineBar; row: number }[];
}

/**
 * Greedy interval packing per host: each bar goes to the first row free at its
 * start, so bars never overlap; a host shows at least one row even when idle.
 * Hosts missing from `hosts` but present in bars get a lane too.
 */
export function layoutLanes(hosts: readonly { id: string; maxJobs: number }[], bars: readonly TimelineBar[]): Lane[] {
  const order = [...hosts.map((h) => h.id)];
  for (const b of bars) if (!order.includes(b.host)) order.push(b.host);
  const slots = new Map(hosts.map((h) => [h.id, h.maxJobs]));
  return order.map((host) => {
    const mine = bars.filter((b) => b.host === host).sort((a, b) => a.start - b.start || a.end - b.end);
    const rowEnds: number[] = [];
    const placed = mine.map((bar) => {
      // A tiny tolerance: back-to-back jobs in one slot share a row.
      let row = rowEnds.findIndex((end) => end <= bar.start + 1e-9);
      if (row < 0) row = rowEnds.push(bar.end) - 1;
      else rowEnds[row] = bar.end;
      return { bar, row };
    });
    return { host, slots: slots.get(host) ?? 0, rows: Math.max(1, rowEnds.length), placed };
  });
}

function renderBar(bar: TimelineBar, x: (t: number) => number, rowTop: number, rowHeight: number, withEstimates: boolean): string {
  const x0 = x(bar.start);
  const w = Math.max(1, x(bar.end) - x0);
  const h = withEstimates ? rowHeight - 10 : rowHeight - 4;
  const barY = rowTop + 2;
  const cls = ['job', ...bar.classes].join(' ');
  const out = [
    `<g class="${esc(cls)}" data-job="${esc(bar.id)}">`,
    `<title>${esc(bar.tooltip)}</title>`,
    `<rect x="${fmt(x0)}" y="${barY}" width="${fmt(w)}" height="${h}" rx="2"/>`,
  ];
  const fits = Math.floor((w - 6) / CHAR_PX);
  if (fits >= 3) out.push(`<text x="${fmt(x0 + 3)}" y="${barY + h / 2 + 4}">${esc(clip(bar.label, fits))}</text>`);
  if (bar.estimate !== undefined) {
    const ew = Math.max(1, x(bar.start + bar.estimate) - x0);
    out.push(`<rect class="estimate" x="${fmt(x0)}" y="${barY + h + 2}" width="${fmt(ew)}" height="3"/>`);
  }
  out.push('</g>');
  return out.join('');
}

function renderAxis(span: number, x: (t: number) => number, top: number, bottom: number): string {
  const out = [`<g class="axis">`, `<line x1="${fmt(x(0))}" y1="${bottom}" x2="${fmt(x(span))}" y2="${bottom}"/>`];
  for (const t of niceTicks(span)) {
    const tx = fmt(x(t));
    out.push(
      `<line class="grid" x1="${tx}" y1="${top}" x2="${tx}" y2="${bottom}"/>`,
      `<line x1="${tx}" y1="${bottom}" x2="${tx}" y2="${bottom + 4}"/>`,
      `<text x="${tx}" y="${bottom + 16}" text-anchor="middle">${esc(formatDuration(t))}</text>`,
    );
  }
  out.push('</g>');
  return out.join('\n');
}

function renderLegend(model: TimelineModel, withEstimates: boolean, y: number): string {
  const entries = [...model.legend.map((l) => ({ ...l, swatch: 'box' as const }))];
  if (withEstimates) entries.push({ className: 'estimate', label: 'estimate', swatch: 'box' });
  let lx = LABEL_WIDTH;
  const out = ['<g class="legend">'];
  for (const e of entries) {
    out.push(`<g class="${esc(e.className)}"><rect x="${lx}" y="${y}" width="14" height="10" rx="2"/></g>`, `<text x="${lx + 18}" y="${y + 9}">${esc(e.label)}</text>`);
    lx += 18 + e.label.length * CHAR_PX + 18;
  }
  for (const note of model.notes ?? []) {
    out.push(`<text x="${lx}" y="${y + 9}">${esc(note)}</text>`);
    lx += note.length * CHAR_PX + 18;
  }
  out.push('</g>');
  return out.join('');
}

/** Steps a human reads easily on a duration axis: seconds, minutes, hours. */
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** Tick positions from 0 to span: the smallest friendly step giving at most `maxTicks` intervals. */
export function niceTicks(span: number, maxTicks = 10): number[] {
  if (!(span > 0)) return [0];
  let step = STEPS.find((s) => span / s <= maxTicks);
  if (step === undefined) {
    const days = Math.ceil(span / 86400 / maxTicks);
    step = days * 86400;
  }
  if (span < 1) step = niceFraction(span / maxTicks);
  const ticks: number[] = [];
  for (let i = 0; i * step <= span + step * 1e-9; i++) ticks.push(round(i * step));
  return ticks;
}

function niceFraction(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/** Truncates to `max` characters with an ellipsis. */
export function clip(text: string, max: number): string {
  const n = Math.floor(max);
  if (text.length <= n) return text;
  return n <= 1 ? '…' : `${text.slice(0, n - 1)}…`;
}

/**
 * XML text/attribute escape. Also drops characters XML 1.0 forbids (C0
 * controls other than tab/newline/CR, lone surrogates) instead of producing
 * a file no parser accepts.
 */
export function esc(text: string): string {
  return text
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function fmt(n: number): string {
  return String(Math.round(n * 10) / 10);
}

function round(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

/** Shared with the HTML report so both pictures look the same. */
export const TIMELINE_CSS = [
  '.background{fill:#fff}',
  '.title{font-size:15px;font-weight:bold;fill:#222}',
  '.lane-bg{fill:#f4f6f8}',
  '.lane-bg.odd{fill:#e9edf1}',
  '.host{fill:#222;font-weight:bold}',
  '.job rect{fill:#7aa6d6;stroke:#3d6e9e;stroke-width:0.6}',
  '.job text{fill:#0d2238;pointer-events:none}',
  '.job.critical rect{fill:#f0a04b;stroke:#b05a00;stroke-width:1.2}',
  '.job.failed rect{fill:#e06c6c;stroke:#8e1f1f}',
  '.job.interrupted rect{fill:#c9c9c9;stroke:#777}',
  '.job.fetched rect,.job.copied rect{fill:#8fc79a;stroke:#3e7a4a}',
  '.job.fell-back rect{fill:#e8c468;stroke:#8a6d1c}',
  '.job rect.estimate,.estimate rect{fill:#333;stroke:none;opacity:0.55}',
  '.axis line{stroke:#555;stroke-width:1}',
  '.axis line.grid{stroke:#bbb;stroke-dasharray:2 3}',
  '.axis text,.legend text{fill:#333}',
].join('');
