import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { postgresBinDir } from '../../scripts/cluster/postgresServer.js';

/**
 * Whether the integration tests can run here: they start real sshd builders in
 * mount namespaces, so they need root, sshd, unshare/nsenter and nix-store.
 *
 *   describe.runIf(integrationPrereqs())('...', () => { ... })
 *
 * On a developer machine without them the tests are skipped (with the reason
 * printed once). In CI (`CI` set) a missing prerequisite THROWS instead, so a
 * broken CI image fails loudly rather than passing by skipping everything.
 */
const TOOLS: Array<{ name: string; paths: string[] }> = [
  { name: 'sshd', paths: ['/usr/sbin/sshd'] },
  { name: 'ssh', paths: ['ssh'] },
  { name: 'ssh-keygen', paths: ['ssh-keygen'] },
  { name: 'unshare', paths: ['unshare'] },
  { name: 'nsenter', paths: ['nsenter'] },
  { name: 'nix-store', paths: ['nix-store'] },
];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(command: string): boolean {
  if (command.startsWith('/')) return executable(command);
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return [...dirs, '/usr/sbin', '/sbin'].some((dir) => executable(join(dir, command)));
}

/** What is missing for the integration tests; empty when they can run. */
export function missingIntegrationPrereqs(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (the test cluster bind-mounts /nix in mount namespaces)');
  for (const tool of TOOLS) {
    if (!tool.paths.some(onPath)) missing.push(tool.name);
  }
  // The fleet tests run a private PostgreSQL server from Debian's postgresql package.
  if (postgresBinDir() === undefined) missing.push('postgresql');
  return missing;
}

let reported = false;

export function integrationPrereqs(): boolean {
  const missing = missingIntegrationPrereqs();
  if (missing.length === 0) return true;
  const message = `integration tests need ${missing.join(', ')} (scripts/install-system-deps.sh installs them; run as root)`;
  if (process.env.CI) throw new Error(`CI is set but ${message}`);
  if (!reported) {
    reported = true;
    console.warn(`skipping: ${message}`);
  }
  return false;
}
