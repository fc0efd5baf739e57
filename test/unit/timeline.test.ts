import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { clip, esc, layoutLanes, niceTicks, planToSvg, type PlanSvgInput, type TimelineBar } from '../../src/report/timelineSvg.js';

/**
 * A small XML well-formedness check: tags balance, attributes are quoted,
 * text and attribute values hold no raw `<` and only known entities.
 * Returns the elements seen (name + attributes) for further assertions.
 */
function parseXml(xml: string): { name: string; attrs: Record<string, string>; text: string }[] {
  const elements: { name: string; attrs: Record<string, string>; text: string }[] = [];
  const stack: { name: string; attrs: Record<string, string>; text: string }[] = [];
  const entity = /&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/y;
  const checkText = (text: string, where: string) => {
    for (let i = 0; i < text.length; i++) {
      if (text[i] === '<') throw new Error(`raw < in ${where}`);
      if (text[i] === '&') {
        entity.lastIndex = i;
        if (!entity.test(text)) throw new Error(`bad entity in ${where}: ${text.slice(i, i + 10)}`);
      }
      if (/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/.test(text[i]!)) throw new Error(`control character in ${where}`);
    }
  };
  const tagPattern = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/y;
  let i = 0;
  let root = 0;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = xml.slice(i, lt < 0 ? xml.length : lt);
    checkText(text, 'text');
    if (stack.length > 0) stack[stack.length - 1]!.text += text;
    else if (text.trim() !== '') throw new Error(`text outside the root: ${text.slice(0, 20)}`);
    if (lt < 0) break;
    if (xml.startsWith('<!--', lt)) {
      const end = xml.indexOf('-->', lt);
      if (end < 0) throw new Error('unclosed comment');
      i = end + 3;
      continue;
    }
    tagPattern.lastIndex = lt;
    const tag = tagPattern.exec(xml);
    if (!tag) throw new Error(`malformed tag at ${lt}: ${xml.slice(lt, lt + 40)}`);
    const [whole, closing, name, attrText, selfClosing] = tag as unknown as [string, string, string, string, string];
    if (closing) {
      const open = stack.pop();
      if (open?.name !== name) throw new Error(`</${name}> closes <${open?.name}>`);
    } else {
      const attrs: Record<string, string> = {};
      for (const m of attrText.matchAll(/([A-Za-z_][\w:.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
        const value = m[2] ?? m[3] ?? '';
        checkText(value, `attribute ${m[1]}`);
        if (m[1]! in attrs) throw new Error(`duplicate attribute ${m[1]}`);
        attrs[m[1]!] = value;
      }
      const el = { name, attrs, text: '' };
      elements.push(el);
      if (stack.length === 0) root += 1;
      if (!selfClosing) stack.push(el);
    }
    i = lt + whole.length;
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack[stack.length - 1]!.name}>`);
  if (root !== 1) throw new Error(`expected one root element, got ${root}`);
  return elements;
}

const sample: PlanSvgInput = {
  hosts: [
    { id: 'local', maxJobs: 2 },
    { id: 'ruby', maxJobs: 4 },
    { id: 'idle-host', maxJobs: 1 },
  ],
  assignments: [
    { jobId: '/nix/store/a-glibc.drv', host: 'ruby', start: 0, end: 120 },
    { jobId: '/nix/store/b-gcc.drv', host: 'ruby', start: 120, end: 900 },
    { jobId: '/nix/store/c-zlib.drv', host: 'ruby', start: 0, end: 30 },
    { jobId: '/nix/store/d-evil.drv', host: 'local', start: 10, end: 400 },
    { jobId: '/nix/store/e-x.drv', host: 'local', start: 30, end: 31 },
  ],
  names: new Map([
    ['/nix/store/a-glibc.drv', 'glibc-2.39'],
    ['/nix/store/b-gcc.drv', 'gcc-13.2.0'],
    ['/nix/store/c-zlib.drv', 'zlib-1.3'],
    ['/nix/store/d-evil.drv', `<script>alert("x")</script> & 'quotes' \u0001`],
    ['/nix/store/e-x.drv', 'tiny'],
  ]),
  criticalPath: ['/nix/store/a-glibc.drv', '/nix/store/b-gcc.drv'],
  makespan: 900,
};

describe('planToSvg', () => {
  const svg = planToSvg(sample);
  const elements = parseXml(svg);

  it('is well-formed standalone SVG', () => {
    expect(elements[0]!.name).toBe('svg');
    expect(elements[0]!.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    expect(svg).not.toMatch(/href=|url\(/);
  });

  it('draws one lane per host, idle hosts included', () => {
    const lanes = elements.filter((e) => e.name === 'g' && e.attrs.class === 'lane').map((e) => e.attrs['data-host']);
    expect(lanes).toEqual(['local', 'ruby', 'idle-host']);
  });

  it('marks the critical path and only it', () => {
    const critical = elements.filter((e) => e.name === 'g' && e.attrs.class === 'job critical' && e.attrs['data-job']);
    expect(critical.map((e) => e.attrs['data-job'])).toEqual(['/nix/store/a-glibc.drv', '/nix/store/b-gcc.drv']);
    const titles = elements.filter((e) => e.name === 'title').map((e) => e.text);
    expect(titles.filter((t) => t.includes('on the critical path'))).toHaveLength(2);
  });

  it('escapes names from .drv files and gives every bar a tooltip', () => {
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;');
    const bars = elements.filter((e) => e.name === 'g' && e.attrs['data-job']);
    const tooltips = elements.filter((e) => e.name === 'title' && e.text.includes('/nix/store/'));
    expect(bars).toHaveLength(5);
    expect(tooltips).toHaveLength(5);
  });

  it('labels bars whose name fits and leaves tiny bars unlabelled', () => {
    const labels = elements.filter((e) => e.name === 'text').map((e) => e.text);
    expect(labels).toContain('gcc-13.2.0');
    expect(labels).not.toContain('tiny');
  });

  it('has a time axis with friendly ticks up to the makespan', () => {
    const axisTexts = svg.match(/text-anchor="middle">[^<]*/g)!.map((s) => s.replace('text-anchor="middle">', ''));
    expect(axisTexts[0]).toBe('0s');
    expect(axisTexts.at(-1)).toBe('14m00s');
  });

  it('stays well-formed for arbitrary names and times', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ unit: 'binary', maxLength: 40 }), fc.double({ min: 0, max: 1e5, noNaN: true }), fc.double({ min: 0, max: 1e4, noNaN: true })), {
          maxLength: 12,
        }),
        (jobs) => {
          const assignments = jobs.map(([, start, dur], i) => ({ jobId: `j${i}`, host: i % 2 ? 'a' : 'b&<c>', start, end: start + dur }));
          const svgText = planToSvg({
            hosts: [{ id: 'a', maxJobs: 1 }],
            assignments,
            names: new Map(jobs.map(([name], i) => [`j${i}`, name])),
            criticalPath: ['j0'],
            makespan: Math.max(0, ...assignments.map((a) => a.end)),
          });
          parseXml(svgText);
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('layoutLanes', () => {
  const bar = (id: string, start: number, end: number, host = 'h'): TimelineBar => ({ id, host, start, end, label: id, tooltip: id, classes: [] });

  it('never puts overlapping bars in one row and reuses freed rows', () => {
    const [lane] = layoutLanes([{ id: 'h', maxJobs: 2 }], [bar('a', 0, 10), bar('b', 5, 15), bar('c', 10, 20), bar('d', 12, 13)]);
    expect(lane!.placed.map((p) => [p.bar.id, p.row])).toEqual([
      ['a', 0],
      ['b', 1],
      ['c', 0],
      ['d', 2],
    ]);
    expect(lane!.rows).toBe(3);
  });

  it('adds lanes for hosts only the bars mention', () => {
    expect(layoutLanes([], [bar('a', 0, 1, 'x')]).map((l) => l.host)).toEqual(['x']);
  });
});

describe('helpers', () => {
  it('niceTicks picks human steps', () => {
    expect(niceTicks(900)).toEqual([0, 120, 240, 360, 480, 600, 720, 840]);
    expect(niceTicks(45)).toEqual([0, 5, 10, 15, 20, 25, 30, 35, 40, 45]);
    expect(niceTicks(0)).toEqual([0]);
    expect(niceTicks(0.5)).toEqual([0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]);
  });
  it('clip and esc', () => {
    expect(clip('abcdef', 4)).toBe('abc…');
    expect(clip('abc', 4)).toBe('abc');
    expect(esc(`a<b>&"'\u0007`)).toBe('a&lt;b&gt;&amp;&quot;&#39;');
  });
});
