import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DAGS } from './realDags.js';
import {
  defaultDurationRules,
  DurationRulesError,
  estimate,
  jitterFactor,
  type EstimationInput,
} from '../../src/schedule/durations.js';
import { loadDurationRules } from '../../src/cli/durationRulesFile.js';

const RULES_FILE = join(DAGS, 'durations.json');

function drv(over: Partial<EstimationInput>): EstimationInput {
  return {
    drvPath: '/nix/store/00000000000000000000000000000000-zlib-1.3.1.drv',
    name: 'zlib-1.3.1',
    system: 'x86_64-linux',
    isFixedOutput: false,
    preferLocalBuild: false,
    requiredSystemFeatures: [],
    isBuiltin: false,
    ...over,
  };
}

function tmpFile(content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'offload-durations-'));
  const file = join(dir, 'durations.json');
  writeFileSync(file, content);
  return file;
}

describe('durations.json model', () => {
  const rules = loadDurationRules(RULES_FILE);

  it('jitter comes from the first 8 hex digits of sha256(drvPath)', () => {
    // sha256(path) starts with d971635d = 3648086877 → 0.7 + 0.6·3648086877/0xffffffff
    expect(jitterFactor('/nix/store/00000000000000000000000000000000-zlib-1.3.1.drv', 0.3)).toBeCloseTo(
      1.2096318495249450,
      12,
    );
    expect(estimate(drv({}), rules)).toEqual({ seconds: expect.closeTo(108.866866457245, 9), source: 'rules' });
  });

  it('byName rules win, and the factor is the same on every call', () => {
    // sha256 starts with c64e0703 = 3327002371 → 5400 · (0.7 + 0.6·3327002371/0xffffffff)
    const firefox = drv({
      drvPath: '/nix/store/w89zlppkq2s1r3hz7rrnbdxyd5dc01kz-firefox-unwrapped-132.0.2.drv',
      name: 'firefox-unwrapped-132.0.2',
      requiredSystemFeatures: ['big-parallel'],
    });
    expect(estimate(firefox, rules).seconds).toBeCloseTo(6289.795055852689, 8);
    expect(estimate(firefox, rules).seconds).toBe(estimate(firefox, rules).seconds);
  });

  it('fixed-output derivations always take byClass.fod', () => {
    expect(estimate(drv({ isFixedOutput: true, name: 'gcc-13.3.0.tar.xz' }), rules).seconds).toBe(5);
  });

  it('classes: big-parallel, trivial (preferLocalBuild), normal, all within the jitter band', () => {
    const bp = estimate(drv({ name: 'something', requiredSystemFeatures: ['big-parallel'] }), rules).seconds;
    const trivial = estimate(drv({ name: 'hook.sh', preferLocalBuild: true }), rules).seconds;
    const normal = estimate(drv({ name: 'libfoo-1' }), rules).seconds;
    const f = jitterFactor(drv({}).drvPath, 0.3);
    expect(bp).toBeCloseTo(1800 * f, 9);
    expect(trivial).toBeCloseTo(1 * f, 9);
    expect(normal).toBeCloseTo(90 * f, 9);
  });

  it('factors stay within [1 - jitter, 1 + jitter]', () => {
    for (let i = 0; i < 500; i++) {
      const f = jitterFactor(`/nix/store/${i}-x.drv`, 0.3);
      expect(f).toBeGreaterThanOrEqual(0.7);
      expect(f).toBeLessThanOrEqual(1.3);
    }
  });
});

describe('estimate sources', () => {
  it('history wins and reports history', () => {
    const history = (name: string, system: string) => (name === 'zlib-1.3.1' && system === 'x86_64-linux' ? 42 : undefined);
    expect(estimate(drv({}), defaultDurationRules, history)).toEqual({ seconds: 42, source: 'history' });
    expect(estimate(drv({ name: 'other' }), defaultDurationRules, history).source).toBe('default');
  });
  it('built-in rules report default and mirror durations.json, without its jitter', () => {
    const fromFile = loadDurationRules(RULES_FILE);
    const d = drv({ name: 'llvm-18.1.8' });
    expect(estimate(d, defaultDurationRules)).toEqual({ seconds: estimate(d, { ...fromFile, jitter: 0 }).seconds, source: 'default' });
  });
  it('built-in estimates are the same for every derivation of a class: nothing the user reads is jittered', () => {
    expect(defaultDurationRules.jitter).toBe(0);
    const normal = [1, 2, 3].map((i) => estimate(drv({ drvPath: `/nix/store/${String(i).repeat(32)}-libfoo-${i}.drv`, name: `libfoo-${i}` }), defaultDurationRules));
    expect(normal).toEqual([1, 2, 3].map(() => ({ seconds: 90, source: 'default' })));
    expect(estimate(drv({ name: 'llvm-18.1.8' }), defaultDurationRules).seconds).toBe(2700);
  });
});

describe('loadDurationRules errors', () => {
  it('names the missing file', () => {
    expect(() => loadDurationRules('/nonexistent/durations.json')).toThrow(
      /cannot read duration rules \/nonexistent\/durations.json: ENOENT/,
    );
  });
  it('rejects invalid JSON', () => {
    const file = tmpFile('{ not json');
    expect(() => loadDurationRules(file)).toThrow(DurationRulesError);
    expect(() => loadDurationRules(file)).toThrow(/is not valid JSON/);
  });
  it('names the bad field', () => {
    const file = tmpFile(JSON.stringify({ byClass: { fod: { seconds: 5 } } }));
    expect(() => loadDurationRules(file)).toThrow(/field byClass.trivial/);
  });
  it('names a bad regular expression', () => {
    const file = tmpFile(
      JSON.stringify({
        byName: [{ match: '([', seconds: 1 }],
        byClass: { fod: { seconds: 1 }, trivial: { seconds: 1 }, 'big-parallel': { seconds: 1 }, normal: { seconds: 1 } },
      }),
    );
    expect(() => loadDurationRules(file)).toThrow(/byName.0.match "\(\[" is not a valid regular expression/);
  });
});
