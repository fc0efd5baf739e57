import { describe, expect, it } from 'vitest';
import { hostEstimates, runReportHtml, type RunReportInput, type RunReportJob } from '../../src/report/runReportHtml.js';

const records: RunReportJob[] = [
  { drvPath: '/nix/store/a-glibc.drv', name: 'glibc-2.39', host: 'ruby', status: 'built', start: 0, end: 100, attempts: 1 },
  { drvPath: '/nix/store/b-gcc.drv', name: 'gcc-13.2.0', host: 'local', status: 'built', start: 100, end: 400, attempts: 2 },
  { drvPath: '/nix/store/c-bad.drv', name: '<img src=x onerror=alert(1)>', host: 'ruby', status: 'failed', start: 10, end: 20, attempts: 1, error: 'builder failed with exit code 1 & <more>' },
  { drvPath: '/nix/store/d-after.drv', name: 'after-bad', host: '', status: 'skipped', attempts: 0, error: 'depends on a failed build' },
];

const input: RunReportInput = {
  records,
  makespan: 400,
  plannedMakespan: 350,
  hosts: [
    { id: 'local', maxJobs: 2 },
    { id: 'ruby', maxJobs: 4 },
  ],
  estimates: new Map([
    ['/nix/store/a-glibc.drv', 80],
    ['/nix/store/b-gcc.drv', 300],
    ['/nix/store/c-bad.drv', 15],
  ]),
  criticalPath: ['/nix/store/a-glibc.drv', '/nix/store/b-gcc.drv'],
  command: 'offload build ./result.drv --report "r.html"',
};

describe('runReportHtml', () => {
  const html = runReportHtml(input);

  it('is one self-contained page: no scripts, no external resources', () => {
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).not.toMatch(/<(script|link|img|iframe|object|embed)\b/i);
    expect(html).not.toMatch(/\s(src|href)\s*=\s*["']|@import|url\(/i);
    expect(html.match(/https?:\/\/[^"\s]*/g)).toEqual(['http://www.w3.org/2000/svg']);
  });

  it('escapes names, errors and the command line', () => {
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('builder failed with exit code 1 &amp; &lt;more&gt;');
    expect(html).toContain('--report &quot;r.html&quot;');
  });

  it('draws an actual bar with an estimate bar for each job that ran, failed ones marked', () => {
    const bars = [...html.matchAll(/<g class="([^"]*)" data-job="([^"]*)">/g)].map((m) => [m[2], m[1]]);
    expect(bars).toEqual(
      expect.arrayContaining([
        ['/nix/store/a-glibc.drv', 'job critical'],
        ['/nix/store/b-gcc.drv', 'job critical'],
        ['/nix/store/c-bad.drv', 'job failed'],
      ]),
    );
    expect(bars).toHaveLength(3);
    expect(html.match(/<rect class="estimate"/g)).toHaveLength(3);
  });

  it('tables every derivation with estimated vs actual and the difference', () => {
    const rows = [...html.matchAll(/<tr><td title="([^"]*)">.*?<\/tr>/g)].map((m) => m[0]);
    expect(rows).toHaveLength(4);
    const gcc = rows.find((r) => r.includes('gcc-13.2.0'))!;
    expect(gcc).toContain('<td class="num">5m00s</td><td class="num">5m00s</td>');
    const glibc = rows.find((r) => r.includes('glibc'))!;
    expect(glibc).toMatch(/1m20s<\/td><td class="num">1m40s<\/td><td class="num slower">\+20s/);
    expect(rows.at(-1)).toContain('after-bad');
  });

  it('summarises makespan, plan, statuses and estimate accuracy', () => {
    expect(html).toContain('<th>planned makespan</th><td>5m50s</td>');
    expect(html).toContain('2 built, 1 failed, 1 skipped');
    // glibc 100/80 = 1.25, gcc 300/300 = 1 → median 1.125 ≈ 1.13 (failed builds don't count).
    expect(html).toContain('1.13× over 2 builds');
  });
});

describe('hostEstimates', () => {
  it('divides the reference estimate by the speedFactor of the host that ran the job', () => {
    const jobs = new Map([
      ['/nix/store/a-glibc.drv', { duration: 100 }],
      ['/nix/store/b-gcc.drv', { duration: 300 }],
    ]);
    const est = hostEstimates(records, jobs, [
      { id: 'ruby', speedFactor: 2 },
      { id: 'local', speedFactor: 1 },
    ]);
    expect(Object.fromEntries(est)).toEqual({ '/nix/store/a-glibc.drv': 50, '/nix/store/b-gcc.drv': 300 });
  });
});

describe('runReportHtml with fetches and copies', () => {
  const CACHE = 'https://cache.example.org';
  const transfers: RunReportJob[] = [
    { drvPath: '/nix/store/e-zlib.drv', name: 'zlib-1.3', host: 'caches', status: 'fetched', start: 0, end: 2, attempts: 1, action: 'fetch', transfer: { bytes: 2 * 1024 * 1024, from: CACHE } },
    { drvPath: '/nix/store/f-openssl.drv', name: 'openssl-3.0', host: 'ruby', status: 'fetched', start: 1, end: 3, attempts: 1, action: 'fetch', transfer: { bytes: 6 * 1024 * 1024, from: CACHE } },
    { drvPath: '/nix/store/g-top.drv', name: 'top-1.0', host: 'caches', status: 'copied', start: 5, end: 6, attempts: 1, action: 'copy', transfer: { bytes: 1024, from: 'ruby' } },
    { drvPath: '/nix/store/h-gone.drv', name: 'gone-1.0', host: 'caches', status: 'fell-back', start: 0, end: 1, attempts: 1, action: 'fetch', transfer: { bytes: 4096, from: CACHE }, error: 'NAR missing' },
    { drvPath: '/nix/store/i-app.drv', name: 'app-2.0', host: 'ruby', status: 'built', start: 3, end: 5, attempts: 1 },
  ];
  const html = runReportHtml({ records: transfers, makespan: 6, hosts: [{ id: 'caches', maxJobs: 16 }, { id: 'ruby', maxJobs: 2 }], estimates: new Map() });

  it('counts fetches per cache and copies per builder, with bytes, time and rate, in the summary', () => {
    expect(html).toContain('2 fetched, 1 copied, 1 fell-back, 1 built');
    expect(html).toContain(`<th>fetched from ${CACHE}</th><td>2 fetches, 8.00 MiB in 4s, 2.00 MiB/s</td>`);
    expect(html).toContain('<th>copied from ruby</th><td>1 copy, 1.00 KiB in 1s, 1.00 KiB/s</td>');
  });

  it('says in each row what moved from where, on the host that did it', () => {
    const row = (name: string) => [...html.matchAll(/<tr><td title="[^"]*">.*?<\/tr>/g)].map((m) => m[0]).find((r) => r.includes(name))!;
    expect(row('openssl-3.0')).toContain(`<td>ruby</td><td>fetch 6.00 MiB from ${CACHE}</td><td class="status fetched">fetched</td>`);
    expect(row('top-1.0')).toContain('<td>caches</td><td>copy 1.00 KiB from ruby</td><td class="status copied">copied</td>');
    expect(row('gone-1.0')).toContain('NAR missing');
    expect(row('app-2.0')).toContain('<td>ruby</td><td>build</td>');
  });

  it('draws fetches and copies on the lane or builder that made them, in their own colour', () => {
    const bars = [...html.matchAll(/<g class="([^"]*)" data-job="([^"]*)">/g)].map((m) => [m[2], m[1]]);
    expect(bars).toEqual(expect.arrayContaining([['/nix/store/e-zlib.drv', 'job fetched'], ['/nix/store/f-openssl.drv', 'job fetched'], ['/nix/store/g-top.drv', 'job copied']]));
    expect(html).toContain('fetched or copied');
    expect(html).toContain('.job.fetched rect');
  });
});
