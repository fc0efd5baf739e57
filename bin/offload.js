#!/usr/bin/env node
// dist/cli/main.cjs is one bundle of src/ (scripts/bundle.mjs), compiled with its V8 code cache by dist/launch.cjs (src/launch/).
import { fileURLToPath } from 'node:url';
import { launch } from '../dist/launch.cjs';

launch(fileURLToPath(import.meta.resolve('../dist/cli/main.cjs')), process.argv);
