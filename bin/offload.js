#!/usr/bin/env node
// dist/cli/main.cjs is one bundle of src/ (scripts/bundle.mjs), compiled with its V8 code cache by
// dist/launch.cjs (src/launch/). CommonJS (bin/package.json): an ES module entry would start Node's
// ES module loader first, ~15 ms of CPU per start (measured, offload --version) for nothing it needs.
const { join } = require('node:path');

require('../dist/launch.cjs').launch(join(__dirname, '..', 'dist', 'cli', 'main.cjs'), process.argv);
