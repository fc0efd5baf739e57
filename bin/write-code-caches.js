#!/usr/bin/env node
// Writes the bundle's V8 code caches (src/launch/): `npm run build` runs it after bundling, and
// `postinstall` again with --if-built, so an install of a packed offload (`npm install -g
// offload-*.tgz`) gets caches made by the Node that will run it: V8 refuses a cache from another
// version, and offload then starts without one. --if-built: nothing to do without dist/ (a
// checkout's `npm ci` installs before it builds), and a failure only warns: an install must not
// fail over what only makes a start faster.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const ifBuilt = process.argv.includes('--if-built');
const dist = join(__dirname, '..', 'dist');
if (!(ifBuilt && !existsSync(join(dist, 'launch.cjs')))) {
  try {
    require(join(dist, 'launch.cjs')).writeCodeCaches(join(dist, 'cli', 'main.cjs'), [join(dist, 'vendor', 'ssh2.cjs')]);
  } catch (error) {
    if (!ifBuilt) throw error;
    process.stderr.write(`offload: no V8 code cache written (${error instanceof Error ? error.message : String(error)}); offload starts without one\n`);
  }
}
