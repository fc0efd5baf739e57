import { buildSync } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODE_CACHE_SUFFIX, CachedScripts } from '../../src/launch/cachedScripts.js';

let dir: string;
let main: string;
let helper: string;
let launcher: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'offload-code-cache-'));
  mkdirSync(join(dir, 'cli'));
  mkdirSync(join(dir, 'vendor'));
  main = join(dir, 'cli', 'main.cjs');
  helper = join(dir, 'vendor', 'helper.cjs');
  // Enough functions that a cache holds more than its header: each a closure the top level builds.
  const fns = Array.from({ length: 200 }, (_, i) => `exports.f${i} = (x) => x * ${i} + ${i};`).join('\n');
  writeFileSync(main, `const helper = require('../vendor/helper.cjs');\nconst { basename } = require('node:path');\n${fns}\nexports.answer = () => 'main+' + helper.word() + '@' + basename(__filename);\n`);
  writeFileSync(helper, "exports.word = () => 'one';\n");
  // The module under test as plain CommonJS a bare `node` can require (vitest compiles it for its own workers only).
  launcher = join(dir, 'launcher.cjs');
  buildSync({ entryPoints: ['src/launch/cachedScripts.ts'], bundle: true, platform: 'node', format: 'cjs', outfile: launcher, logLevel: 'warning' });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Loads cli/main.cjs the way launch does, in a fresh `node` as a start does
 * (within one process V8 could answer from its own compilation cache, and
 * vitest's workers may run under flags V8 keys its code caches on): what it
 * answered and how each file used its cache.
 */
function load(write = false): { answer: string; use: Record<string, string> } {
  const script = `
    const { CachedScripts } = require(${JSON.stringify(launcher)});
    const scripts = new CachedScripts();
    const answer = scripts.require(${JSON.stringify(main)}).answer();
    if (${write}) scripts.writeCaches();
    const use = Object.fromEntries([...scripts.cacheUse()].map(([f, u]) => [f.slice(${dir.length + 1}), u]));
    process.stdout.write(JSON.stringify({ answer, use }));`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } })) as ReturnType<typeof load>;
}

describe('CachedScripts', () => {
  it('loads a CommonJS file and its relative requires with no cache, then with the caches it wrote', () => {
    const first = load(true);
    expect(first).toEqual({ answer: 'main+one@main.cjs', use: { 'cli/main.cjs': 'absent', 'vendor/helper.cjs': 'absent' } });
    expect(readFileSync(main + CODE_CACHE_SUFFIX).length).toBeGreaterThan(1000);
    expect(load()).toEqual({ answer: 'main+one@main.cjs', use: { 'cli/main.cjs': 'used', 'vendor/helper.cjs': 'used' } });
  });

  it('never runs old code: a file edited to the same length ignores the cache V8 alone would accept', () => {
    load(true);
    writeFileSync(helper, "exports.word = () => 'two';\n");
    expect(load()).toEqual({ answer: 'main+two@main.cjs', use: { 'cli/main.cjs': 'used', 'vendor/helper.cjs': 'stale' } });
  });

  it('compiles afresh when V8 refuses the data (another V8, other flags, damage)', () => {
    load(true);
    const cache = readFileSync(main + CODE_CACHE_SUFFIX);
    const damaged = Buffer.from(cache);
    for (let i = cache.length - 64; i < cache.length; i++) damaged[i] = damaged[i]! ^ 0xff;
    // The header (magic and key) is intact; only what V8 reads is not.
    damaged.fill(0x55, 60, 120);
    writeFileSync(main + CODE_CACHE_SUFFIX, damaged);
    expect(load()).toEqual({ answer: expect.stringMatching(/^main\+\w+@main\.cjs$/), use: { 'cli/main.cjs': 'rejected', 'vendor/helper.cjs': 'used' } });
  });

  it('treats a file that is not a cache of ours (no header) as one made from other bytes', () => {
    load(true);
    writeFileSync(helper + CODE_CACHE_SUFFIX, 'not a cache');
    expect(load().use['vendor/helper.cjs']).toBe('stale');
  });

  it('loads in this process too, a second time from the first load', () => {
    const scripts = new CachedScripts();
    const loaded = scripts.require(main) as { answer(): string };
    expect(scripts.require(main)).toBe(loaded);
    expect(loaded.answer()).toMatch(/^main\+\w+@main\.cjs$/);
  });
});
