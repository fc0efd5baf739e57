import { cpus } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseMaxJobs } from '../../src/cli/sharedOptions.js';
import { OffloadError } from '../../src/errors/offloadError.js';

describe('-j / --max-jobs', () => {
  it("takes a count, or 'auto' for one slot per CPU as Nix reads max-jobs", () => {
    expect(parseMaxJobs('0')).toBe(0);
    expect(parseMaxJobs('4')).toBe(4);
    expect(parseMaxJobs('auto')).toBe(Math.max(1, cpus().length));
    expect(() => parseMaxJobs('many')).toThrow(OffloadError);
    expect(() => parseMaxJobs('-1')).toThrow(OffloadError);
  });
});
