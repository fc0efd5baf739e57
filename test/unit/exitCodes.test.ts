import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { exitCodeHelp, exitCodeMarkdown } from '../../src/cli/exitCodes.js';
import { ExitCode } from '../../src/errors/offloadError.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('exit codes', () => {
  it('--help lists every code ExitCode defines, once, within 80 columns', () => {
    const listed = [...exitCodeHelp().matchAll(/^ {2}(\d+) {2}/gm)].map((m) => Number(m[1]));
    expect(new Set(listed).size).toBe(listed.length);
    for (const code of Object.values(ExitCode)) expect(listed).toContain(code);
    for (const line of exitCodeHelp().split('\n')) expect(line.length).toBeLessThanOrEqual(80);
    expect(exitCodeHelp()).not.toContain('`');
  });

  it("the README's table is the one rendered from the source (npx tsx scripts/readme-exit-codes.ts)", () => {
    const section = readme.slice(readme.indexOf('## Exit codes'));
    const table = section.slice(section.indexOf('| code |'));
    expect(table.slice(0, table.indexOf('\n\n'))).toBe(exitCodeMarkdown());
  });
});
