import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { inflateSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { planToSvg } from '../../src/report/timelineSvg.js';
import { runReportHtml } from '../../src/report/runReportHtml.js';

/**
 * Renders the plan SVG and the run report in headless Chromium and checks the
 * screenshots show the picture: not blank, and the bar colours are there (an
 * SVG error page or an unstyled page would not have them).
 */

function findChromium(): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    for (const dir of dirs) {
      try {
        accessSync(join(dir, name), constants.X_OK);
        return join(dir, name);
      } catch {
        // keep looking
      }
    }
  }
  return undefined;
}

function chromiumPrereq(): string | undefined {
  const found = findChromium();
  if (found) return found;
  const message = 'the render tests need headless Chromium (apt-get install chromium)';
  if (process.env.CI) throw new Error(`CI is set but ${message}`);
  console.warn(`skipping: ${message}`);
  return undefined;
}

const chromium = chromiumPrereq();
const dir = mkdtempSync(join(tmpdir(), 'offload-render-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function screenshot(file: string): Promise<string> {
  const png = `${file}.png`;
  await promisify(execFile)(
    chromium!,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${join(dir, 'profile')}`,
      `--screenshot=${png}`,
      '--window-size=1400,900',
      `file://${file}`,
    ],
    { timeout: 120_000 },
  );
  return png;
}

interface Image {
  width: number;
  height: number;
  /** RGB at (x, y). */
  pixel(x: number, y: number): [number, number, number];
}

/** Just enough PNG: 8-bit RGB/RGBA, non-interlaced, as Chromium writes screenshots. */
function decodePng(bytes: Buffer): Image {
  expect(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
  let offset = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (offset < bytes.length) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString('latin1', offset + 4, offset + 8);
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colorType, , , interlace] = [data[8], data[9], data[10], data[11], data[12]];
      expect({ depth, interlace }).toEqual({ depth: 8, interlace: 0 });
      channels = colorType === 6 ? 4 : colorType === 2 ? 3 : 0;
      expect(channels).toBeGreaterThan(0);
    } else if (type === 'IDAT') idat.push(data);
    offset += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    for (let i = 0; i < stride; i++) {
      const x = raw[y * (stride + 1) + 1 + i]!;
      const a = i >= channels ? out[y * stride + i - channels]! : 0;
      const b = y > 0 ? out[(y - 1) * stride + i]! : 0;
      const c = i >= channels && y > 0 ? out[(y - 1) * stride + i - channels]! : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const predictor = [0, a, b, (a + b) >> 1, paeth][filter];
      if (predictor === undefined) throw new Error(`PNG filter ${filter} unknown`);
      out[y * stride + i] = (x + predictor) & 0xff;
    }
  }
  return {
    width,
    height,
    pixel: (x, y) => {
      const at = y * stride + x * channels;
      return [out[at]!, out[at + 1]!, out[at + 2]!];
    },
  };
}

function colourCounts(image: Image): Map<string, number> {
  const counts = new Map<string, number>();
  for (let y = 0; y < image.height; y += 2) {
    for (let x = 0; x < image.width; x += 2) {
      const key = image.pixel(x, y).join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/** Pixels within a small distance of a colour (anti-aliasing and colour management shift it a little). */
function near(counts: Map<string, number>, [r, g, b]: [number, number, number], tolerance = 6): number {
  let n = 0;
  for (const [key, count] of counts) {
    const [kr, kg, kb] = key.split(',').map(Number) as [number, number, number];
    if (Math.abs(kr - r) <= tolerance && Math.abs(kg - g) <= tolerance && Math.abs(kb - b) <= tolerance) n += count;
  }
  return n;
}

function checkScreenshot(png: string): Map<string, number> {
  const size = statSync(png).size;
  expect(size).toBeGreaterThan(5_000);
  const image = decodePng(readFileSync(png));
  expect([image.width, image.height]).toEqual([1400, 900]);
  const counts = colourCounts(image);
  // A blank page is one colour; a drawn timeline has backgrounds, bars, text, anti-aliasing.
  expect(counts.size).toBeGreaterThan(20);
  const [, mostCommon] = [...counts].sort((a, b) => b[1] - a[1])[0]!;
  expect(mostCommon).toBeLessThan((image.width / 2) * (image.height / 2) * 0.95);
  return counts;
}

const BAR_BLUE: [number, number, number] = [0x7a, 0xa6, 0xd6];
const CRITICAL_ORANGE: [number, number, number] = [0xf0, 0xa0, 0x4b];
const FAILED_RED: [number, number, number] = [0xe0, 0x6c, 0x6c];

function workload() {
  const hosts = [
    { id: 'local', maxJobs: 2 },
    { id: 'ruby', maxJobs: 4 },
    { id: 'sapphire', maxJobs: 2 },
  ];
  const assignments: { jobId: string; host: string; start: number; end: number }[] = [];
  const names = new Map<string, string>();
  for (let i = 0; i < 24; i++) {
    const host = hosts[i % 3]!.id;
    const start = Math.floor(i / 3) * 90 + (i % 2) * 20;
    const jobId = `/nix/store/${String(i).padStart(32, 'a')}-pkg-${i}.drv`;
    assignments.push({ jobId, host, start, end: start + 60 + (i % 5) * 25 });
    names.set(jobId, i === 5 ? `<b>"weird" & name</b>-${i}` : `package-number-${i}-1.0`);
  }
  const criticalPath = assignments.filter((_, i) => i % 3 === 1).map((a) => a.jobId);
  const makespan = Math.max(...assignments.map((a) => a.end));
  return { hosts, assignments, names, criticalPath, makespan };
}

describe.runIf(chromium !== undefined)('rendering in headless Chromium', () => {
  it('draws the plan SVG: lanes, bars and the critical path', async () => {
    const file = join(dir, 'plan.svg');
    writeFileSync(file, planToSvg(workload()));
    const counts = checkScreenshot(await screenshot(file));
    expect(near(counts, BAR_BLUE)).toBeGreaterThan(500);
    expect(near(counts, CRITICAL_ORANGE)).toBeGreaterThan(500);
  });

  it('draws the run report page: timeline with failed builds and the table', async () => {
    const w = workload();
    const records = w.assignments.map((a, i) => ({
      drvPath: a.jobId,
      name: w.names.get(a.jobId)!,
      host: a.host,
      status: i === 7 ? 'failed' : 'built',
      start: a.start + 5,
      end: a.end + (i % 4) * 10,
      attempts: 1,
      ...(i === 7 ? { error: 'builder failed with exit code 1' } : {}),
    }));
    const file = join(dir, 'report.html');
    writeFileSync(
      file,
      runReportHtml({
        records,
        makespan: Math.max(...records.map((r) => r.end)),
        plannedMakespan: w.makespan,
        hosts: w.hosts,
        estimates: new Map(w.assignments.map((a) => [a.jobId, a.end - a.start])),
        criticalPath: w.criticalPath,
        command: 'offload build --report report.html',
      }),
    );
    const counts = checkScreenshot(await screenshot(file));
    expect(near(counts, BAR_BLUE)).toBeGreaterThan(300);
    expect(near(counts, CRITICAL_ORANGE)).toBeGreaterThan(300);
    expect(near(counts, FAILED_RED)).toBeGreaterThan(20);
  });
});
