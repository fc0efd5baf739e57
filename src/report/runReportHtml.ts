import { median } from '../history/median.js';
import { filterAnsiEscapes } from '../remote/terminalEscapes.js';
import { formatBytes } from './byteSize.js';
import { formatDuration } from './duration.js';
import { esc, renderTimeline, type TimelineBar } from './timelineSvg.js';

/** What the report needs of one job of a finished run (a subset of the executor's JobRecord). */
export interface RunReportJob {
  drvPath: string;
  name: string;
  /** Host of the last attempt; empty when it never started. */
  host: string;
  status: string;
  /** Seconds since the run started. */
  start?: number;
  end?: number;
  attempts?: number;
  error?: string;
  /** Default `build`; a fetch from a cache or a copy from a builder moved `transfer.bytes` from `transfer.from`. */
  action?: string;
  transfer?: { bytes: number; from: string };
}

export interface RunReportInput {
  records: readonly RunReportJob[];
  makespan: number;
  hosts: readonly { id: string; maxJobs: number }[];
  /** Estimated seconds on the host that ran the job (see hostEstimates). */
  estimates: ReadonlyMap<string, number>;
  /** The plan's makespan, when the run followed a plan. */
  plannedMakespan?: number;
  criticalPath?: readonly string[];
  interrupted?: boolean;
  startedAt?: Date;
  /** The command line, shown under the title. */
  command?: string;
}

/**
 * Estimates on the host each job actually ran on: the job's reference
 * duration divided by that host's speedFactor (the scheduler's cost model).
 */
export function hostEstimates(
  records: readonly RunReportJob[],
  jobs: ReadonlyMap<string, { duration: number }>,
  hosts: readonly { id: string; speedFactor: number }[],
): Map<string, number> {
  const speed = new Map(hosts.map((h) => [h.id, h.speedFactor]));
  const out = new Map<string, number>();
  for (const r of records) {
    const duration = jobs.get(r.drvPath)?.duration;
    if (duration !== undefined) out.set(r.drvPath, duration / (speed.get(r.host) ?? 1));
  }
  return out;
}

/** `offload build --report FILE.html`: one self-contained page, no external resources. */
export function runReportHtml(run: RunReportInput): string {
  const title = `offload run — ${formatDuration(run.makespan)}${run.interrupted ? ' (interrupted)' : ''}`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    // No network, no scripts: the page only shows what is written here.
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`,
    `<title>${esc(title)}</title>`,
    `<style>${PAGE_CSS}</style>`,
    '</head>',
    '<body>',
    `<h1>${esc(title)}</h1>`,
    run.command ? `<p class="command"><code>${esc(run.command)}</code></p>` : '',
    summary(run),
    '<h2>Timeline</h2>',
    `<div class="timeline">${timeline(run)}</div>`,
    '<h2>Derivations</h2>',
    jobTable(run),
    '</body>',
    '</html>',
    '',
  ]
    .filter((line) => line !== '')
    .join('\n');
}

function timeline(run: RunReportInput): string {
  const critical = new Set(run.criticalPath ?? []);
  const bars: TimelineBar[] = run.records
    .filter((r) => r.start !== undefined && r.end !== undefined && r.host !== '')
    .map((r) => {
      const estimate = run.estimates.get(r.drvPath);
      const actual = r.end! - r.start!;
      const classes = [...(critical.has(r.drvPath) ? ['critical'] : []), ...(r.status === 'built' ? [] : [cssClass(r.status)])];
      return {
        id: r.drvPath,
        host: r.host,
        start: r.start!,
        end: r.end!,
        label: r.name,
        tooltip: `${r.name}\n${r.host}: ${r.status}${r.transfer ? ` ${transferText(r.transfer)}` : ''} in ${formatDuration(actual)}${estimate !== undefined ? ` (estimated ${formatDuration(estimate)})` : ''}\n${r.drvPath}`,
        classes,
        ...(estimate !== undefined ? { estimate } : {}),
      };
    });
  return renderTimeline({
    hosts: run.hosts,
    bars,
    makespan: Math.max(run.makespan, ...bars.map((b) => b.start + (b.estimate ?? 0))),
    legend: [
      { className: 'job', label: 'built' },
      { className: 'job critical', label: 'critical path' },
      { className: 'job failed', label: 'failed' },
      ...(bars.some((b) => b.classes.includes('fetched') || b.classes.includes('copied')) ? [{ className: 'job fetched', label: 'fetched or copied' }] : []),
    ],
  });
}

function summary(run: RunReportInput): string {
  const counts = new Map<string, number>();
  for (const r of run.records) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const ratios = run.records
    .filter((r) => r.status === 'built' && r.start !== undefined && r.end !== undefined)
    .map((r) => ({ actual: r.end! - r.start!, estimate: run.estimates.get(r.drvPath) }))
    .filter((x): x is { actual: number; estimate: number } => x.estimate !== undefined && x.estimate > 0)
    .map((x) => x.actual / x.estimate);
  const rows: [string, string][] = [
    ['makespan', formatDuration(run.makespan)],
    ...(run.plannedMakespan !== undefined ? [['planned makespan', formatDuration(run.plannedMakespan)] as [string, string]] : []),
    ['derivations', [...counts].map(([status, n]) => `${n} ${status}`).join(', ') || 'none'],
    ...(ratios.length > 0 ? [['actual ÷ estimate (median)', `${median(ratios).toFixed(2)}× over ${ratios.length} builds`] as [string, string]] : []),
    ...transferRows(run),
    ...(run.startedAt ? [['started', run.startedAt.toISOString()] as [string, string]] : []),
  ];
  const hostRows = hostUsage(run).map(
    (h) => `<tr><td>${esc(h.host)}</td><td class="num">${h.jobs}</td><td class="num">${esc(formatDuration(h.busy))}</td><td class="num">${h.utilisation}</td></tr>`,
  );
  return [
    '<table class="summary">',
    ...rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`),
    '</table>',
    '<table class="hosts"><thead><tr><th>host</th><th>jobs</th><th>busy</th><th>utilisation</th></tr></thead><tbody>',
    ...hostRows,
    '</tbody></table>',
  ].join('\n');
}

function hostUsage(run: RunReportInput): { host: string; jobs: number; busy: number; utilisation: string }[] {
  const ids = [...run.hosts.map((h) => h.id)];
  for (const r of run.records) if (r.host !== '' && !ids.includes(r.host)) ids.push(r.host);
  const slots = new Map(run.hosts.map((h) => [h.id, h.maxJobs]));
  return ids.map((host) => {
    const mine = run.records.filter((r) => r.host === host && r.start !== undefined && r.end !== undefined);
    const busy = mine.reduce((sum, r) => sum + (r.end! - r.start!), 0);
    const capacity = Math.max(1, slots.get(host) ?? 1) * run.makespan;
    return { host, jobs: mine.length, busy, utilisation: capacity > 0 ? `${Math.round((busy / capacity) * 100)}%` : '–' };
  });
}

function jobTable(run: RunReportInput): string {
  const order = [...run.records].sort((a, b) => (a.start ?? Infinity) - (b.start ?? Infinity) || a.name.localeCompare(b.name));
  const rows = order.map((r) => {
    const estimate = run.estimates.get(r.drvPath);
    const actual = r.start !== undefined && r.end !== undefined ? r.end - r.start : undefined;
    const delta = estimate !== undefined && actual !== undefined ? actual - estimate : undefined;
    const cells = [
      `<td title="${esc(r.drvPath)}">${esc(r.name)}</td>`,
      `<td>${esc(r.host || '–')}</td>`,
      `<td>${r.transfer ? esc(`${r.action ?? 'fetch'} ${transferText(r.transfer)}`) : 'build'}</td>`,
      `<td class="status ${esc(cssClass(r.status))}">${esc(r.status)}</td>`,
      `<td class="num">${r.start !== undefined ? esc(formatDuration(r.start)) : '–'}</td>`,
      `<td class="num">${estimate !== undefined ? esc(formatDuration(estimate)) : '–'}</td>`,
      `<td class="num">${actual !== undefined ? esc(formatDuration(actual)) : '–'}</td>`,
      `<td class="num ${delta !== undefined && delta > 0 ? 'slower' : 'faster'}">${delta !== undefined ? `${delta > 0 ? '+' : '−'}${esc(formatDuration(Math.abs(delta)))}` : '–'}</td>`,
      `<td class="num">${r.attempts ?? ''}</td>`,
      `<td class="error">${esc(filterAnsiEscapes(r.error ?? '', { keepColours: false }))}</td>`,
    ];
    return `<tr>${cells.join('')}</tr>`;
  });
  return [
    '<table class="jobs"><thead><tr><th>derivation</th><th>host</th><th>action</th><th>status</th><th>started</th><th>estimated</th><th>actual</th><th>Δ</th><th>attempts</th><th>error</th></tr></thead><tbody>',
    ...rows,
    '</tbody></table>',
  ].join('\n');
}

function transferText(t: { bytes: number; from: string }): string {
  return `${formatBytes(t.bytes)} from ${t.from}`;
}

/**
 * One summary row per source of fetches and copies that arrived: how many,
 * how many bytes, in how long, at what rate (what the history learns as the
 * source's rate for the next plan).
 */
function transferRows(run: RunReportInput): [string, string][] {
  const bySource = new Map<string, { action: string; count: number; bytes: number; seconds: number }>();
  for (const r of run.records) {
    if (!r.transfer || (r.status !== 'fetched' && r.status !== 'copied') || r.start === undefined || r.end === undefined) continue;
    const key = `${r.status} ${r.transfer.from}`;
    const s = bySource.get(key) ?? { action: r.status, count: 0, bytes: 0, seconds: 0 };
    s.count++;
    s.bytes += r.transfer.bytes;
    s.seconds += r.end - r.start;
    bySource.set(key, s);
  }
  return [...bySource.entries()].map(([key, s]) => {
    const from = key.slice(s.action.length + 1);
    const rate = s.seconds > 0 ? `, ${formatBytes(s.bytes / s.seconds)}/s` : '';
    const noun = s.action === 'fetched' ? 'fetch' : 'copy';
    return [`${s.action} from ${from}`, `${s.count} ${s.count === 1 ? noun : `${noun === 'copy' ? 'copie' : noun}${noun === 'fetch' ? 'es' : 's'}`}, ${formatBytes(s.bytes)} in ${formatDuration(s.seconds)}${rate}`];
  });
}

function cssClass(status: string): string {
  return status.replace(/[^a-z0-9-]/gi, '-').toLowerCase();
}

const PAGE_CSS = [
  'body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}',
  'h1{font-size:20px;margin:0 0 8px}',
  'h2{font-size:16px;margin:24px 0 8px}',
  '.command code{background:#f2f2f2;padding:2px 6px;border-radius:3px}',
  'table{border-collapse:collapse;margin:8px 0;font-size:13px}',
  'th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}',
  'thead th{background:#f2f4f7}',
  'table.summary th{background:#f7f7f7;font-weight:600}',
  '.num{text-align:right;font-variant-numeric:tabular-nums}',
  '.status.built{color:#1d6b2a}',
  '.status.failed,.status.skipped{color:#a11;font-weight:600}',
  '.slower{color:#a11}',
  '.faster{color:#1d6b2a}',
  '.error{max-width:40em;white-space:pre-wrap;font-family:monospace;font-size:12px}',
  '.timeline{overflow-x:auto}',
].join('');
