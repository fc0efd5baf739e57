// Bundles the CLI (dist/cli/main.cjs) and writes its V8 code caches; bin/offload.js loads it through
// dist/launch.cjs (src/launch/). Every offload command pays for loading its own code before it does
// anything, so what this writes is shaped by what a start costs, measured:
// - one file instead of some 200, each resolved, read and compiled apart;
// - CommonJS, because Node 20 takes a V8 code cache only for scripts (vm.Script), not for ES modules:
//   a start deserializes the bytecode made here instead of compiling the bundle again;
// - ASCII only, whitespace and comments dropped (minifyWhitespace; names are kept): V8 then holds the
//   source as a one-byte string, read and decoded in one pass (a comment with a "…" made it two-byte);
// - ssh2, a third of the code, in a file of its own (dist/vendor/ssh2.cjs), compiled only by the
//   commands that connect.
// It runs in `npm run build`, hence in `prepare` (`npm ci`, `npm pack`), and before the integration
// tests and benchmarks when src/ is newer (scripts/freshBundle.ts).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SSH_CRYPTO_BINDING = 'ssh2/lib/protocol/crypto/build/Release/sshcrypto.node';
// Where better-sqlite3's install puts its addon (prebuild-install, or `node-gyp rebuild --release`).
const SQLITE_BINDING = 'better-sqlite3/build/Release/better_sqlite3.node';
// Relative to dist/cli/main.cjs: the launcher compiles a bundle's relative requires with their caches too.
const SSH2_FILE = '../vendor/ssh2.cjs';
// The files the launcher compiles come wrapped in their module function, so it compiles them as read
// (src/launch/cachedScripts.ts SELF_WRAPPED_HEAD, which bundle.test.ts checks this against).
const SELF_WRAPPED_HEAD =
  "(function (run) { return this === globalThis ? run : run.call(this, exports, require, module, __filename, __dirname); }).call(this, function (exports, require, module, __filename, __dirname) {";
const SELF_WRAPPED_TAIL = '});';

// Nothing else in dist/ (such as files an older build left) is loaded; none stays to mislead.
rmSync(join(root, 'dist'), { recursive: true, force: true });

const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  outExtension: { '.js': '.cjs' },
  minifyWhitespace: true,
  // `--debug` (and `node --enable-source-maps`) maps stack traces back to src/ (see src/launch/launch.ts).
  sourcemap: true,
  metafile: true,
  logLevel: 'warning',
};

const results = await Promise.all([
  build({
    ...common,
    // dist/cli/main.cjs, where tsc put main.js, so paths main.ts reads relative to itself (../../package.json) still hold.
    entryPoints: { 'cli/main': 'src/cli/main.ts' },
    outdir: 'dist',
    // Native addons, and `pg`, which only a shared state loads (src/cli/sharedState.ts): from node_modules at run time.
    external: ['pg', 'cpu-features'],
    plugins: [sshCryptoBinding(), sqliteBinding(), ssh2File(), lazySegmenter(), lazyPinoParts()],
    define: { 'import.meta.url': '__offloadModuleUrl' },
    banner: { js: `${SELF_WRAPPED_HEAD}var __offloadModuleUrl = require("node:url").pathToFileURL(__filename).href;` },
    footer: { js: SELF_WRAPPED_TAIL },
  }),
  build({
    ...common,
    entryPoints: { 'vendor/ssh2': 'ssh2' },
    outdir: 'dist',
    external: ['cpu-features'],
    plugins: [sshCryptoBinding(), lazyHttpAgents()],
    banner: { js: SELF_WRAPPED_HEAD },
    footer: { js: SELF_WRAPPED_TAIL },
  }),
  build({ ...common, entryPoints: { launch: 'src/launch/launch.ts' }, outdir: 'dist' }),
]);

for (const result of results) {
  for (const [file, output] of Object.entries(result.metafile.outputs)) {
    if (!file.endsWith('.cjs')) continue;
    // A vm.Script has no loader for import(): what src/ imports on demand must be bundled (esbuild turns it into a require).
    const dynamic = output.imports.filter((i) => i.kind === 'dynamic-import' && i.external).map((i) => i.path);
    if (dynamic.length > 0) throw new Error(`${file} keeps import() of ${dynamic.join(', ')}: import it statically or bundle it`);
    const bytes = readFileSync(join(root, file));
    const wide = bytes.findIndex((b) => b > 0x7f);
    if (wide >= 0) throw new Error(`${file} has a non-ASCII byte at ${wide}: V8 would hold the whole source as a two-byte string`);
  }
}

/**
 * ssh2 loads its native AES-GCM binding from a path relative to its own
 * file, inside a try: bundled, that path would point into dist/, the
 * require would fail silently and every byte would go through the
 * JavaScript cipher. Resolve it as ssh2's own file in node_modules instead.
 */
function sshCryptoBinding() {
  return {
    name: 'ssh2-native-binding',
    setup(b) {
      b.onResolve({ filter: /\/sshcrypto\.node$/ }, () => ({ path: SSH_CRYPTO_BINDING, external: true }));
    },
  };
}

/**
 * better-sqlite3's JavaScript is bundled (so it loads with the bundle's code
 * cache), its addon stays in node_modules. Left to Node, every start
 * resolved, read and compiled its dozen files and then let `bindings` search
 * for the addon by stack trace and stat: ~10-15 ms of CPU, measured, of
 * every command. The build fails if a new better-sqlite3 no longer loads its
 * addon with the line this replaces.
 */
function sqliteBinding() {
  const searched = "require('bindings')('better_sqlite3.node')";
  return {
    name: 'better-sqlite3-native-binding',
    setup(b) {
      b.onLoad({ filter: /[\\/]better-sqlite3[\\/]lib[\\/]database\.js$/ }, ({ path }) => {
        const source = readFileSync(path, 'utf8');
        if (source.split(searched).length !== 2) throw new Error(`${path} no longer reads "${searched}": check how it finds its addon`);
        return { contents: source.replace(searched, `require(${JSON.stringify(SQLITE_BINDING)})`), loader: 'js' };
      });
      b.onResolve({ filter: /\/better_sqlite3\.node$/ }, () => ({ path: SQLITE_BINDING, external: true }));
    },
  };
}

/**
 * string-width builds an Intl.Segmenter when it is loaded, and the first
 * one loads ICU's break rules: 15-40 ms of every start, measured, for
 * every command, though only tables and the live view on a terminal
 * measure text. The bundle builds it on first use instead. The build fails
 * if a new string-width no longer has the line this replaces.
 */
function lazySegmenter() {
  const eager = 'const segmenter = new Intl.Segmenter();';
  const lazy = 'let segmenterOnce; const segmenter = { segment: (text) => (segmenterOnce ??= new Intl.Segmenter()).segment(text) };';
  return {
    name: 'lazy-segmenter',
    setup(b) {
      b.onLoad({ filter: /[\\/]string-width[\\/]index\.js$/ }, ({ path }) => {
        const source = readFileSync(path, 'utf8');
        if (source.split(eager).length !== 2) throw new Error(`${path} no longer reads "${eager}": check what it builds when loaded`);
        return { contents: source.replace(eager, lazy), loader: 'js' };
      });
    },
  };
}

/**
 * pino loads its transports (a worker thread per transport: thread-stream,
 * worker_threads) when it is loaded, for every command; offload's logger
 * writes to its own destination and never starts one. sonic-boom (pino's
 * file destination, offload's --log-file) loads node:assert for one check
 * when a file is opened. The bundle loads each on first use instead. The
 * build fails if a new pino or sonic-boom no longer has the lines this
 * replaces.
 */
function lazyPinoParts() {
  const edits = {
    'index.js': [["const assert = require('assert')\n", "const assert = (...args) => require('assert')(...args)\n"]],
    'pino.js': [["module.exports.transport = require('./lib/transport')\n", "Object.defineProperty(module.exports, 'transport', { enumerable: true, get: () => require('./lib/transport') })\n"]],
    'tools.js': [
      ["const { isMainThread } = require('worker_threads')\n", ''],
      ["const transport = require('./transport')\n", "const transport = (options) => require('./transport')(options)\n"],
      ['if (!opts.sync && isMainThread) {', "if (!opts.sync && require('worker_threads').isMainThread) {"],
    ],
  };
  return {
    name: 'lazy-pino-parts',
    setup(b) {
      b.onLoad({ filter: /[\\/](pino[\\/](pino|lib[\\/]tools)|sonic-boom[\\/]index)\.js$/ }, ({ path }) => {
        let source = readFileSync(path, 'utf8');
        for (const [eager, lazy] of edits[basename(path)]) {
          if (source.split(eager).length !== 2) throw new Error(`${path} no longer reads "${eager.trim()}": check what pino loads`);
          source = source.replace(eager, lazy);
        }
        return { contents: source, loader: 'js' };
      });
    },
  };
}

/**
 * ssh2's index loads its HTTP(S) agents (SSH-tunnelled http.Agent
 * subclasses), and with them http, https and tls: ~7 ms of CPU of every
 * command that connects, measured, for classes offload never uses. The
 * bundle loads them on first use instead. The build fails if a new ssh2 no
 * longer has the lines this replaces.
 */
function lazyHttpAgents() {
  const eager = "const {\n  SSHTTPAgent: HTTPAgent,\n  SSHTTPSAgent: HTTPSAgent,\n} = require('./http-agents.js');\n";
  const exported = '  HTTPAgent,\n  HTTPSAgent,\n';
  const lazy = "  get HTTPAgent() { return require('./http-agents.js').SSHTTPAgent; },\n  get HTTPSAgent() { return require('./http-agents.js').SSHTTPSAgent; },\n";
  return {
    name: 'lazy-http-agents',
    setup(b) {
      b.onLoad({ filter: /[\\/]ssh2[\\/]lib[\\/]index\.js$/ }, ({ path }) => {
        const source = readFileSync(path, 'utf8');
        if (source.split(eager).length !== 2 || source.split(exported).length !== 2) throw new Error(`${path} no longer loads its HTTP agents as expected: check what it loads`);
        return { contents: source.replace(eager, '').replace(exported, lazy), loader: 'js' };
      });
    },
  };
}

/** src/ imports `ssh2`; the bundle requires dist/vendor/ssh2.cjs instead, loaded when a command first connects. */
function ssh2File() {
  return {
    name: 'ssh2-file',
    setup(b) {
      b.onResolve({ filter: /^ssh2$/ }, () => ({ path: SSH2_FILE, external: true }));
    },
  };
}

// Where ssh2 has its native binding, the bundle must find it too (else ssh2 would fall back to JavaScript silently).
const fromBundle = createRequire(join(root, 'dist', 'vendor', 'ssh2.cjs'));
if (fromBundle('ssh2/lib/protocol/crypto.js').bindingAvailable) fromBundle.resolve(SSH_CRYPTO_BINDING);
// better-sqlite3 has no fallback: its addon must be where the bundle looks for it.
createRequire(join(root, 'dist', 'cli', 'main.cjs')).resolve(SQLITE_BINDING);

// The caches come from a plain `node`: V8 refuses a cache made under other flags.
execFileSync(process.execPath, [join(root, 'bin', 'write-code-caches.js')], { stdio: 'inherit', env: { ...process.env, NODE_OPTIONS: '' } });
