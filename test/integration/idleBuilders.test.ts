import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostSystem, startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { instantiate, NIX_ENV, offload, parseJson } from './buildSupport.js';

/** Each builder writes the start of every command it is asked to run to `commands-<name>`, then runs it. */
const WRAPPER = (dir: string) => `#!/bin/sh
printf '%.40s\\n' "$SSH_ORIGINAL_COMMAND" >> "${dir}/commands-$1"
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
`;

const run = promisify(execFile);
const SERVE = 'nix-store --serve --write';
const PRESENCE = 'if [ -d /nix/store ]; then echo @present';

describe.runIf(integrationPrereqs())('builders a run does not need at its start', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  const dir = mkdtempSync(join(tmpdir(), 'offload-idle-builders-'));
  const names = ['aquamarine', 'ruby'];
  const commands = (name: string) => (existsSync(join(dir, `commands-${name}`)) ? readFileSync(join(dir, `commands-${name}`), 'utf8').split('\n').filter(Boolean) : []);
  const forget = () => names.forEach((name) => rmSync(join(dir, `commands-${name}`), { force: true }));
  const build = async (drv: string) => {
    const r = await offload(['build', drv, '--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0', '--no-history', '--no-out-link', '--json']);
    expect(r.code, r.stderr).toBe(0);
    return parseJson(r);
  };

  beforeAll(async () => {
    const wrapper = join(dir, 'log-commands.sh');
    writeFileSync(wrapper, WRAPPER(dir));
    chmodSync(wrapper, 0o755);
    cluster = await startTempCluster('idle', names.map((name) => ({ name, maxJobs: 2, systems: [hostSystem()], forceCommand: `${wrapper} ${name}` })));
  });
  afterAll(async () => {
    await cluster?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('asks every builder what it holds, but starts nix-store only on the one that builds', async () => {
    forget();
    const [drv] = await instantiate('withSource');
    const json = await build(drv!);
    expect(json.jobs).toHaveLength(1);
    const [used, idle] = json.jobs[0]!.host === 'ruby' ? ['ruby', 'aquamarine'] : ['aquamarine', 'ruby'];
    expect(commands(used)).toContain(SERVE);
    // The idle builder was logged in to, probed for load and asked about the output on its disk: no Nix started there.
    expect(commands(idle)).toContain(PRESENCE);
    expect(commands(idle)).not.toContain(SERVE);
    // The one that builds was asked over its nix-store, starting anyway: no disk check there.
    expect(commands(used)).not.toContain(PRESENCE);
  });

  it('builds an output that a builder has on disk but its Nix does not hold (a failed build left it)', async () => {
    forget();
    const [drv] = await instantiate('withSource');
    const { stdout } = await run('nix-store', ['--query', '--outputs', drv!], { env: NIX_ENV });
    const out = stdout.trim();
    for (const name of names) expect((await cluster.runOnBuilder(name, ['mkdir', '-p', `${out}/leftover`])).code).toBe(0);
    const json = await build(drv!);
    expect(json.jobs[0]).toMatchObject({ name: 'with-source', status: 'built' });
    // The idle builder's disk named the path, so its Nix was asked too, and said it is not valid.
    const idle = names.find((name) => name !== json.jobs[0]!.host)!;
    expect(commands(idle)).toEqual(expect.arrayContaining([PRESENCE, SERVE]));
    expect(readFileSync(json.outputs[drv!]!.out!, 'utf8')).toMatch(/^with-source /);
  });
});
