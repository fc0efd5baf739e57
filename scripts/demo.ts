/**
 * `npm run demo`: a real distributed build on this machine. Starts the test
 * cluster (three sshd builders, each with its own Nix store), instantiates
 * fixtures/nix/demo.nix (13 small derivations: a diamond, a chain, a wide
 * layer, one aarch64-linux and one needing kvm), prints `offload plan` for
 * it, builds it with `offload build --max-jobs 1`, shows the result and stops
 * the cluster. Needs root, Nix and sshd (installed here if missing).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import { missingIntegrationPrereqs } from '../test/support/requireIntegration.js';
import { startCluster, type TestCluster } from './cluster/testCluster.js';
import { localNixVariables } from './cluster/localNix.js';

const root = join(import.meta.dirname, '..');

function say(text: string): void {
  process.stderr.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

function ensurePrerequisites(): void {
  if (missingIntegrationPrereqs().length === 0) return;
  if (process.getuid?.() === 0) {
    say('installing Nix and OpenSSH (scripts/install-system-deps.sh)');
    execFileSync(join(root, 'scripts', 'install-system-deps.sh'), { stdio: 'inherit' });
  }
  const missing = missingIntegrationPrereqs();
  if (missing.length > 0) throw new Error(`the demo needs ${missing.join(', ')}`);
}

async function demo(): Promise<number> {
  ensurePrerequisites();
  // The machine's store with the demo's own settings: no substituters (nothing leaves the machine).
  Object.assign(process.env, localNixVariables);
  const dir = mkdtempSync(join(tmpdir(), 'offload-demo-'));
  let cluster: TestCluster | undefined;
  const cleanup = async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    say('starting the test cluster');
    cluster = await startCluster({ dir });
    for (const b of cluster.builders) {
      process.stderr.write(`  ${b.name}: 127.0.0.1:${b.port}, ${b.maxJobs} jobs, systems ${b.systems.join(' ')}, features ${b.features.join(' ') || '-'}\n`);
    }
    say('instantiating fixtures/nix/demo.nix');
    const nonce = randomBytes(6).toString('hex');
    const drv = execFileSync('nix-instantiate', [join(root, 'fixtures', 'nix', 'demo.nix'), '--argstr', 'nonce', nonce], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    process.stderr.write(`  ${drv}\n`);
    const machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '1'];

    say(`offload plan ${drv} --max-jobs 1`);
    const planned = await main(['node', 'offload', 'plan', drv, ...machines]);
    if (planned !== 0) return planned;

    say(`offload build ${drv} --max-jobs 1 --no-out-link`);
    const captured = await captureStdout(() => main(['node', 'offload', 'build', drv, ...machines, '--no-out-link']));
    if (captured.code !== 0) return captured.code;
    const out = captured.stdout.trim();
    say(`output (${out})`);
    process.stdout.write(readFileSync(out, 'utf8'));
    return 0;
  } finally {
    say('stopping the cluster');
    await cleanup();
  }
}

/** The build prints its output path on stdout; keep it to show the file afterwards. */
async function captureStdout(action: () => Promise<number>): Promise<{ code: number; stdout: string }> {
  const write = process.stdout.write.bind(process.stdout);
  let stdout = '';
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    stdout += chunk.toString();
    return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  });
  try {
    return { code: await action(), stdout };
  } finally {
    process.stdout.write = write;
  }
}

demo().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
