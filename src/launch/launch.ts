import { createRequire } from 'node:module';
import { CachedScripts } from './cachedScripts.js';

interface Cli {
  main(argv: string[]): Promise<number>;
}

/**
 * Runs the bundled CLI (dist/cli/main.cjs), what bin/offload.js does. The
 * bundle compiles with its code cache, except when stack traces are to be
 * mapped back to src/ (--debug, or Node's --enable-source-maps): Node 20
 * applies source maps to what its own require() compiles, not to vm
 * scripts, so then the bundle loads through require() and compiles afresh.
 */
export function launch(bundle: string, argv: string[]): void {
  if (argv.includes('--debug')) process.setSourceMapsEnabled(true);
  const cli = (process.sourceMapsEnabled ? createRequire(bundle)(bundle) : new CachedScripts().require(bundle)) as Cli;
  void cli.main(argv).then((code) => {
    process.exitCode = code;
  });
}

/** Loads the bundle and what it loads on demand (ssh2), then writes their code caches: `npm run build` does this. */
export function writeCodeCaches(bundle: string, onDemand: readonly string[]): string[] {
  const scripts = new CachedScripts();
  scripts.require(bundle);
  for (const file of onDemand) scripts.require(file);
  return scripts.writeCaches();
}
export { CachedScripts } from './cachedScripts.js';
