/**
 * Starts or stops a test cluster by hand, e.g. to try offload or Nix's own
 * remote builds against real sshd builders:
 *   npx tsx scripts/cluster/cli.ts up [--dir D] [--builders N]
 *   npx tsx scripts/cluster/cli.ts down --dir D
 */
import { Command, InvalidArgumentError } from 'commander';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { builderSpecs } from './builderSpec.js';
import { emptyNamespace, isAlive, waitForExit } from './namespaceProcesses.js';
import { startCluster } from './testCluster.js';

interface ClusterState {
  pid: number;
  builders: Array<{ name: string; namespace: string; port: number }>;
}

function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

async function up(options: { dir: string; builders: number }): Promise<void> {
  const cluster = await startCluster({ dir: resolve(options.dir), builders: builderSpecs(options.builders) });
  const lines = [
    `machines file (offload): ${cluster.machinesFile}`,
    `ssh config:              ${cluster.sshConfigFile}`,
    `machines file (Nix):     ${cluster.nixMachinesFile}  (run Nix with NIX_SSHOPTS="${cluster.nixSshOpts}")`,
    ...cluster.builders.map((b) => `  ${b.name.padEnd(12)} 127.0.0.1:${b.port}  store ${b.storeDir}`),
    `stop with Ctrl-C or: npx tsx scripts/cluster/cli.ts down --dir ${cluster.dir}`,
  ];
  console.log(lines.join('\n'));
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await new Promise<void>((done) => {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => done());
  });
  await cluster.stop();
  clearInterval(keepAlive);
  console.log('test cluster stopped');
}

async function down(options: { dir: string }): Promise<void> {
  const stateFile = join(resolve(options.dir), 'cluster.json');
  const state = JSON.parse(await readFile(stateFile, 'utf8')) as ClusterState;
  if (state.pid !== process.pid && isAlive(state.pid)) {
    process.kill(state.pid, 'SIGTERM');
    await waitForExit([state.pid], 10_000);
  }
  // Whatever the `up` process did not stop (it may have been killed) goes now.
  await Promise.all(state.builders.map((b) => emptyNamespace(b.namespace, 3_000)));
  console.log(`test cluster in ${options.dir} is down`);
}

const program = new Command('cluster').description('test cluster of real sshd + Nix builders on this machine');
program
  .command('up')
  .option('--dir <dir>', 'folder for keys, stores and machines files', join(tmpdir(), 'offload-cluster'))
  .option('--builders <n>', 'number of builders (aquamarine, ruby, kana, builder4, ...)', positiveInt, 3)
  .action(up);
program.command('down').requiredOption('--dir <dir>', 'folder given to `up`').action(down);

await program.parseAsync();
