import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { localNixEnv } from '../../scripts/cluster/localNix.js';

const run = promisify(execFile);
const NIX_ENV = localNixEnv();

function ssh(cluster: TestCluster, host: string, command: string) {
  return run('ssh', ['-F', cluster.sshConfigFile, host, command], { timeout: 20_000 });
}

/** First bytes the server sends on a fresh TCP connection ('' if none within the wait). */
function banner(port: number, waitMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let received = '';
    const timer = setTimeout(() => finish(), waitMs);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received);
    };
    socket.on('data', (data) => {
      received += data.toString('latin1');
      finish();
    });
    socket.on('error', () => finish());
  });
}

describe.runIf(integrationPrereqs())('test cluster', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let startupMs = 0;

  beforeAll(async () => {
    const started = Date.now();
    cluster = await startTempCluster('cluster');
    startupMs = Date.now() - started;
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  it('starts the three default builders quickly', () => {
    expect(cluster.builders.map((b) => b.name)).toEqual(['aquamarine', 'ruby', 'kana']);
    expect(new Set(cluster.builders.map((b) => b.port)).size).toBe(3);
    expect(startupMs).toBeLessThan(5_000);
  });

  it('lets the system ssh reach every builder through the generated ssh_config with host-key checking', async () => {
    const versions = await Promise.all(cluster.builders.map((b) => ssh(cluster, b.name, 'nix-store --version')));
    for (const { stdout } of versions) expect(stdout).toMatch(/^nix-store \(Nix\) \d/);
  });

  it('runs sessions with the builder store directly, not through a daemon', async () => {
    const { stdout } = await ssh(cluster, 'ruby', 'echo "$NIX_REMOTE"');
    expect(stdout.trim()).toBe('local');
  });

  it('gives each builder its own nix.conf with its systems and features', async () => {
    const config = async (name: string) => {
      const result = await cluster.runOnBuilder(name, ['nix', '--extra-experimental-features', 'nix-command', 'show-config']);
      expect(result.code, result.stderr).toBe(0);
      const setting = (key: string) => result.stdout.match(new RegExp(`^${key} = (.*)$`, 'm'))?.[1] ?? '';
      return {
        features: setting('system-features').split(' ').filter(Boolean),
        extraPlatforms: setting('extra-platforms').split(' ').filter(Boolean),
        buildUsersGroup: setting('build-users-group'),
        substituters: setting('substituters'),
      };
    };
    const kana = await config('kana');
    const ruby = await config('ruby');
    const aquamarine = await config('aquamarine');
    expect(kana.features).toContain('kvm');
    expect(kana.extraPlatforms).toEqual(['aarch64-linux']);
    expect(ruby.features).toEqual([]);
    expect(ruby.extraPlatforms).toEqual([]);
    expect(aquamarine.features.sort()).toEqual(['benchmark', 'big-parallel']);
    expect(aquamarine.features).not.toContain('kvm');
    for (const c of [kana, ruby, aquamarine]) {
      expect(c.buildUsersGroup).toBe('');
      expect(c.substituters).toBe('');
    }
  });

  it('keeps the stores apart: a path added on one builder is absent elsewhere and on the host', async () => {
    const marker = `marker-${process.pid}-${Date.now()}`;
    const source = join(cluster.dir, marker);
    writeFileSync(source, `${marker}\n`);
    const { stdout } = await ssh(cluster, 'aquamarine', `nix-store --add ${source}`);
    const storePath = stdout.trim();
    expect(storePath).toMatch(new RegExp(`^/nix/store/[a-z0-9]{32}-${marker}$`));
    const base = storePath.slice('/nix/store/'.length);

    expect(readFileSync(join(cluster.builder('aquamarine').storeDir, base), 'utf8')).toBe(`${marker}\n`);
    expect(existsSync(join(cluster.builder('ruby').storeDir, base))).toBe(false);
    expect(existsSync(join(cluster.builder('kana').storeDir, base))).toBe(false);
    expect(existsSync(storePath)).toBe(false);

    const onAquamarine = await cluster.runOnBuilder('aquamarine', ['nix-store', '--check-validity', storePath]);
    const onRuby = await cluster.runOnBuilder('ruby', ['nix-store', '--check-validity', storePath]);
    expect(onAquamarine.code).toBe(0);
    expect(onRuby.code).not.toBe(0);
  });

  it('writes an offload machines file whose pinned keys are the builders\' host keys', () => {
    const machines = JSON.parse(readFileSync(cluster.machinesFile, 'utf8')) as Array<Record<string, unknown>>;
    expect(machines.map((m) => m.hostName)).toEqual(['aquamarine', 'ruby', 'kana']);
    for (const [i, m] of machines.entries()) {
      const builder = cluster.builders[i]!;
      expect(m.port).toBe(builder.port);
      expect(m.sshUser).toBe('root');
      expect(m.sshKey).toBe(cluster.clientKey);
      expect(Buffer.from(String(m.publicHostKey), 'base64').toString()).toBe(builder.hostKeyLine);
      expect(readFileSync(join(builder.root, 'ssh_host_ed25519_key.pub'), 'utf8')).toContain(builder.hostKeyLine);
    }
    expect(machines[2]).toMatchObject({ systems: ['x86_64-linux', 'aarch64-linux'], maxJobs: 2 });
    expect(machines[0]).toMatchObject({ supportedFeatures: ['benchmark', 'big-parallel'], maxJobs: 3 });
  });

  it("serves Nix's own build-remote hook through machines.nix and NIX_SSHOPTS", async () => {
    const tag = `${process.pid}${Date.now()}`;
    const expr = `derivation { name = "cluster-hook-${tag}"; system = "aarch64-linux"; builder = "/bin/sh"; args = ["-c" "echo ${tag} > $out"]; }`;
    const { stdout } = await run(
      'nix-build',
      ['-E', expr, '--no-out-link', '--max-jobs', '0', '--builders', `@${cluster.nixMachinesFile}`],
      { env: { ...NIX_ENV, NIX_SSHOPTS: cluster.nixSshOpts }, timeout: 60_000 },
    );
    const out = stdout.trim();
    // Only kana offers aarch64-linux, so the output must exist in kana's store alone.
    const base = out.slice('/nix/store/'.length);
    expect(existsSync(join(cluster.builder('kana').storeDir, base))).toBe(true);
    expect(existsSync(join(cluster.builder('ruby').storeDir, base))).toBe(false);
    expect(readFileSync(out, 'utf8').trim()).toBe(tag);
  });

  it('pauses a builder so connections hang, and resumes it', async () => {
    const { port } = cluster.builder('ruby');
    cluster.pause('ruby');
    expect(await banner(port, 800)).toBe('');
    cluster.resume('ruby');
    expect(await banner(port, 5_000)).toMatch(/^SSH-2\.0-/);
  });

  it('kills a builder with everything it runs, and starts its sshd again on the same port', async () => {
    const builder = cluster.builder('ruby');
    const port = builder.port;
    const session = ssh(cluster, 'ruby', 'sleep 60').catch((error: unknown) => error);
    await expect.poll(() => cluster.processes('ruby').length, { timeout: 5_000 }).toBeGreaterThan(3);
    await cluster.kill('ruby');
    expect(cluster.processes('ruby')).toEqual([builder.namespacePid]);
    expect(await session).toBeInstanceOf(Error);
    expect(await banner(port, 300)).toBe('');

    await cluster.startSshd('ruby');
    expect(builder.port).toBe(port);
    const { stdout } = await ssh(cluster, 'ruby', 'nix-store --version');
    expect(stdout).toContain('nix-store');
  });

  it('stops the listener only with stopSshd: the port closes, open sessions live on', async () => {
    const session = ssh(cluster, 'aquamarine', 'sleep 1; echo survived');
    await expect.poll(() => cluster.processes('aquamarine').length, { timeout: 5_000 }).toBeGreaterThan(3);
    await cluster.stopSshd('aquamarine');
    expect(await banner(cluster.builder('aquamarine').port, 300)).toBe('');
    expect((await session).stdout.trim()).toBe('survived');
    await cluster.startSshd('aquamarine');
  });

  it('stop() leaves no process behind and closes every port', async () => {
    const namespaces = cluster.builders.map((b) => b.name);
    await cluster.stop();
    const commandLine = (pid: number) => {
      try {
        return `${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`;
      } catch {
        return `${pid} (gone)`;
      }
    };
    for (const name of namespaces) expect(cluster.processes(name).map(commandLine)).toEqual([]);
    for (const b of cluster.builders) expect(await banner(b.port, 200)).toBe('');
  });
});
