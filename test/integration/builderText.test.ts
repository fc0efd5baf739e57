import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostSystem, startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate, offload } from './buildSupport.js';

/**
 * A builder whose `nix-store --serve` stderr carries raw escape sequences
 * (Nix's own builders already mangle them, a hostile or foreign one need
 * not): every build log line that starts with "building " arrives with OSC 52
 * (clipboard), OSC 0 (window title), a screen clear and a colour in front.
 */
const WRAPPER = `#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in
  "nix-store --serve --write")
    { nix-store --serve --write 2>&1 1>&3 3>&- | /bin/sed -u 's/^building /\\x1b]52;c;b3duZWQ=\\x07\\x1b]0;owned\\x1b\\\\\\x1b[2J\\x1b[31mbuilding /' >&2; } 3>&1 ;;
  *) exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
esac
`;

describe.runIf(integrationPrereqs())('build logs from a builder that sends escape sequences', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  const dir = mkdtempSync(join(tmpdir(), 'offload-builder-text-'));

  beforeAll(async () => {
    const wrapper = join(dir, 'serve-wrapper.sh');
    writeFileSync(wrapper, WRAPPER);
    chmodSync(wrapper, 0o755);
    cluster = await startTempCluster('text', [{ name: 'ruby', maxJobs: 2, systems: [hostSystem()], forceCommand: wrapper }]);
  });
  afterAll(async () => {
    await cluster?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reaches stderr, --log-file, --json-events and internal-json with every escape dropped', async () => {
    const [drv] = await instantiate('diamond');
    const logFile = join(dir, 'run.log');
    const args = ['build', drv!, '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--no-history'];
    const r = await offload([...args, '--log-file', logFile, '--json-events']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^\[ruby\] d-top> building d-top$/m);
    const logText = readFileSync(logFile, 'utf8');
    expect(logText).toContain('"msg":"building d-top"');
    expect(r.stdout).toContain('"line":"building d-top"');
    const nom = await offload(['build', (await instantiate('diamond'))[0]!, ...args.slice(2), '--log-format', 'internal-json']);
    expect(nom.code, nom.stderr).toBe(0);
    expect(nom.stderr).toContain('"fields":["building d-top"]');
    for (const text of [r.stderr, r.stdout, logText, nom.stderr]) {
      expect(text).not.toMatch(/\x1b|\\u001b|\u009b|\u009d|\\u009b/);
      expect(text).not.toMatch(/owned|b3duZWQ|52;c/);
    }
  });
});
