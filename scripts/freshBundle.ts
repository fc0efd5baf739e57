import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * The integration tests, the benchmarks and the demo run the CLI as users
 * do (`node bin/offload.js`), which loads the bundle in dist/. Rebuild it
 * when any source is newer, so none of them runs yesterday's code (a
 * benchmark of a stale bundle measures the wrong thing and says nothing).
 * Only the bundle: type errors are tsc's business (`npm run typecheck`), and
 * esbuild takes a second where tsc takes many. The bundle's own age counts,
 * not its code cache's: `npm install` rewrites the caches (postinstall).
 */
export async function ensureFreshBundle(root: string): Promise<void> {
  const built = mtime(join(root, 'dist', 'cli', 'main.cjs'));
  const bundler = join(root, 'scripts', 'bundle.mjs');
  if (built !== undefined && built >= Math.max(newest(join(root, 'src')), mtime(bundler) ?? 0)) return;
  try {
    await promisify(execFile)(process.execPath, [bundler], { cwd: root, maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    const out = `${stdout}${stderr}`;
    throw new Error(`building dist/ failed:\n${out.slice(0, 4000)}`, { cause: error });
  }
}

function mtime(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}
