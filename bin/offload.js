#!/usr/bin/env node
// dist/cli/main.js is one bundle of src/ (scripts/bundle.mjs); with --debug its stack traces name src/ lines.
if (process.argv.includes('--debug')) process.setSourceMapsEnabled(true);
const { main } = await import('../dist/cli/main.js');

main(process.argv).then((code) => {
  process.exitCode = code;
});
