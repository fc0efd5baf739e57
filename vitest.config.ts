import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';
import { localNixVariables } from './scripts/cluster/localNix.js';

// Tests must not learn from (or write into) the developer's own build history
// and slot leases under ~/.cache/offload: every run gets a fresh cache home.
// Nix runs with the tests' own settings, never the machine's nix.conf.
const env = { XDG_CACHE_HOME: mkdtempSync(join(tmpdir(), 'offload-test-cache-')), ...localNixVariables };

// Unit tests are pure and fast; integration tests start the real test cluster
// (sshd + Nix stores in mount namespaces), so they run one file at a time, after the unit tests.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 30_000,
          env,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Builds dist/ when src/ is newer: the build tests run `node bin/offload.js`.
          globalSetup: ['test/support/globalSetup.ts'],
          env,
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // One child process runs the files one after another (vitest 3 has no per-project
          // fileParallelism; only singleFork limits a project to one file at a time).
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
