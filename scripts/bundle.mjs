// Bundles the CLI into one file (dist/cli/main.js, which bin/offload.js loads).
// Loading one module instead of some 200 files, each resolved, read and
// compiled apart, takes a fixed cost off every offload command, measured as
// CPU at start. It runs in `npm run build`, hence in `prepare` (`npm ci`,
// `npm pack`), and before the integration tests (test/support/globalSetup.ts).
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SSH_CRYPTO_BINDING = 'ssh2/lib/protocol/crypto/build/Release/sshcrypto.node';

// Nothing else in dist/ (such as files an older, per-file build left) is loaded; none stays to mislead.
rmSync(join(root, 'dist'), { recursive: true, force: true });

await build({
  absWorkingDir: root,
  // dist/cli/main.js, where tsc put it, so paths main.ts reads relative to itself (../../package.json) still hold.
  entryPoints: { 'cli/main': 'src/cli/main.ts' },
  outdir: 'dist',
  bundle: true,
  // What src/ imports dynamically (PostgreSQL state, …) goes into chunks of its own, loaded only when
  // imported, with the external packages it needs: one bundle would load `pg` at every start.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // `node --enable-source-maps` (and --debug, see bin/offload.js) maps stack traces back to src/.
  sourcemap: true,
  // Native addons, and `pg`, which only a shared state loads (src/cli/sharedState.ts): from node_modules at run time.
  external: ['better-sqlite3', 'pg', 'cpu-features'],
  plugins: [sshCryptoBinding()],
  // The CommonJS dependencies (ssh2, pino) call require() and read __dirname.
  banner: {
    js: [
      "import { createRequire as __offloadCreateRequire } from 'node:module';",
      "import { fileURLToPath as __offloadFileURLToPath } from 'node:url';",
      "import { dirname as __offloadDirname } from 'node:path';",
      'const require = __offloadCreateRequire(import.meta.url);',
      'const __filename = __offloadFileURLToPath(import.meta.url);',
      'const __dirname = __offloadDirname(__filename);',
    ].join(' '),
  },
  logLevel: 'warning',
});

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

// Where ssh2 has its native binding, the bundle must find it too (else ssh2 would fall back to JavaScript silently).
const fromBundle = createRequire(join(root, 'dist', 'cli', 'main.js'));
if (fromBundle('ssh2/lib/protocol/crypto.js').bindingAvailable) fromBundle.resolve(SSH_CRYPTO_BINDING);
