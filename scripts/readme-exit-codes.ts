// Rewrites the table under README.md's "## Exit codes" from src/cli/exitCodes.ts, its one source;
// test/unit/exitCodes.test.ts fails while the two differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { exitCodeMarkdown } from '../src/cli/exitCodes.js';

const path = new URL('../README.md', import.meta.url);
const readme = readFileSync(path, 'utf8');
const start = readme.indexOf('| code |', readme.indexOf('## Exit codes'));
if (start < 0) throw new Error('README.md has no table under "## Exit codes"');
const end = readme.indexOf('\n\n', start);
writeFileSync(path, readme.slice(0, start) + exitCodeMarkdown() + readme.slice(end));
