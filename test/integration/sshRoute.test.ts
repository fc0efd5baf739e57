import { readdirSync, readFileSync, readlinkSync, rmSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMachinesConfig } from '../../src/config/loadMachines.js';
import type { Machine } from '../../src/config/machine.js';
import { type ConnectionLostError, HostUnreachableError, JumpHostError, ProxyCommandError } from '../../src/remote/sshErrors.js';
import { SshPool } from '../../src/remote/sshPool.js';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, offload, parseJson } from './buildSupport.js';
import { instantiateExpr } from './faultSupport.js';

/**
 * Which of `pids` owns the TCP socket bound to local `port` (/proc/net/tcp
 * and each process's fds): the builders share this machine's network, so
 * the port a builder's sshd saw its client come from tells which process
 * connected to it.
 */
function portOwnedBy(port: number, pids: number[]): boolean {
  const inodes = new Set(
    readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((fields) => fields.length > 9 && parseInt(fields[1]!.split(':')[1]!, 16) === port)
      .map((fields) => `socket:[${fields[9]}]`),
  );
  return pids.some((pid) => {
    try {
      return readdirSync(`/proc/${pid}/fd`).some((fd) => inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`)));
    } catch {
      return false;
    }
  });
}

/** TCP sockets of this process connected to 127.0.0.1:`port`. */
function connectionsTo(port: number): number {
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set(
    readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((fields) => fields[2] === remote)
      .map((fields) => `socket:[${fields[9]}]`),
  );
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return inodes.has(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false;
    }
  }).length;
}

describe.runIf(integrationPrereqs())('getting to a builder like OpenSSH: ProxyJump, ProxyCommand, NIX_SSHOPTS', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let dir: string;
  const pools: SshPool[] = [];
  const newPool = (options: ConstructorParameters<typeof SshPool>[0] = {}) => {
    const pool = new SshPool({ knownHostsFiles: [join(dir, 'empty_known_hosts')], globalKnownHostsFiles: [], ...options });
    pools.push(pool);
    return pool;
  };

  beforeAll(async () => {
    cluster = await startTempCluster('ssh-route', [
      { name: 'jump1', allowTcpForwarding: true, sshdLogLevel: 'DEBUG1' },
      { name: 'jump2', allowTcpForwarding: true, sshdLogLevel: 'DEBUG1' },
      { name: 'ruby' },
    ]);
    dir = mkdtempSync(join(tmpdir(), 'offload-ssh-route-'));
  });
  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.closeAll()));
    await cluster?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const ruby = () => cluster.builder('ruby');
  /**
   * ruby only, its host key pinned; where and how to log in comes from
   * ssh_config (and NIX_SSHOPTS). Like the cluster's own machines file it
   * ignores PSI and load: those are the whole shared machine's.
   */
  const machinesFile = () => {
    const file = join(dir, 'machines.json');
    const pressure = { cpuSomeAvg10: null, memoryFullAvg10: null, ioSomeAvg10: null, load1: null };
    writeFileSync(file, JSON.stringify([{ hostName: 'ruby', systems: ruby().systems, maxJobs: ruby().maxJobs, publicHostKey: ruby().publicHostKey, pressure }]));
    return file;
  };
  /** `lines` for ruby first (the first value obtained wins), then the cluster's blocks for every builder. */
  const sshConfig = (name: string, lines: string[]) => {
    const file = join(dir, name);
    writeFileSync(file, ['Host ruby', ...lines.map((l) => `  ${l}`), '', readFileSync(cluster.sshConfigFile, 'utf8')].join('\n'));
    return file;
  };
  const load = async (config: string, env: NodeJS.ProcessEnv = {}) => {
    const loaded = await loadMachinesConfig({ machinesFile: machinesFile(), sshConfigFile: config, env });
    return loaded.machines[0]!;
  };
  /** Where ruby's sshd saw this connection come from: the source port of $SSH_CONNECTION. */
  const clientPort = async (pool: SshPool, machine: Machine) => {
    const result = await pool.exec(machine, 'echo $SSH_CONNECTION');
    const [, port] = result.stdout.trim().split(' ');
    return Number(port);
  };
  /** Forwarded connections a jump host opened, by target port (sshd DEBUG1). */
  const forwardedTo = (jump: string) =>
    [...readFileSync(cluster.builder(jump).sshdLog, 'utf8').matchAll(/server_request_direct_tcpip: originator \S+ port \d+, target 127\.0\.0\.1 port (\d+)/g)].map((m) => Number(m[1]));

  it('builds through a jump host: ruby sees its client come from jump1, which logged the forwarded connection', async () => {
    const config = sshConfig('one_hop', ['ProxyJump jump1']);
    const before = forwardedTo('jump1').length;
    const roots = await instantiateExpr('[ (mk { name = "through-jump"; sleep = "0"; }) ]');
    const r = await offload(['build', ...roots, '--machines', machinesFile(), '--ssh-config', config, '--max-jobs', '0', '--no-out-link', '--json'], NIX_ENV);
    expect(r.code, r.stderr).toBe(0);
    expect(parseJson(r).jobs.map((j) => [j.host, j.status])).toEqual([['ruby', 'built']]);
    expect(forwardedTo('jump1').slice(before)).toContain(ruby().port);

    // While a connection is up, the TCP connection ruby's sshd serves belongs to jump1's sshd, not to offload.
    const pool = newPool();
    const machine = await load(config);
    const port = await clientPort(pool, machine);
    expect(portOwnedBy(port, cluster.processes('jump1'))).toBe(true);
    expect(portOwnedBy(port, [process.pid])).toBe(false);
    const listing = await offload(['machines', '--machines', machinesFile(), '--ssh-config', config], NIX_ENV);
    expect(listing.stdout).toContain(`127.0.0.1:${ruby().port} via root@127.0.0.1:${cluster.builder('jump1').port}`);
  });

  it('closes its TCP connection to a jump host that stopped answering, without waiting for the jump host', async () => {
    const pool = newPool();
    const machine = await load(sshConfig('hung_hop', ['ProxyJump jump1']));
    const jumpPort = cluster.builder('jump1').port;
    // Other tests' pools stay open until the end.
    const others = connectionsTo(jumpPort);
    await pool.exec(machine, 'true');
    expect(connectionsTo(jumpPort)).toBe(others + 1);
    cluster.pause('jump1');
    try {
      await pool.closeAll();
      // Our end is closed once the disconnect has left; a paused jump host never closes its own.
      await expect.poll(() => connectionsTo(jumpPort), { timeout: 1_000 }).toBe(others);
    } finally {
      cluster.resume('jump1');
    }
  });

  it('goes through two hops in order, each with its own Host block: jump1 forwards to jump2, jump2 to ruby', async () => {
    const config = sshConfig('two_hops', ['ProxyJump jump1,jump2']);
    const before = { jump1: forwardedTo('jump1').length, jump2: forwardedTo('jump2').length };
    const pool = newPool();
    const machine = await load(config);
    const port = await clientPort(pool, machine);
    expect(portOwnedBy(port, cluster.processes('jump2'))).toBe(true);
    expect(forwardedTo('jump1').slice(before.jump1)).toEqual([cluster.builder('jump2').port]);
    expect(forwardedTo('jump2').slice(before.jump2)).toEqual([ruby().port]);
    await pool.closeAll();
  });

  it("stops a jump host's own Compression yes link from compressing the builder's encrypted link, which it cannot shrink", async () => {
    const config = sshConfig('compressed_hop', ['ProxyJump jump1']);
    // jump1's block first: the first value obtained wins.
    writeFileSync(config, readFileSync(config, 'utf8').replace('Host ruby', 'Host jump1\n  Compression yes\n\nHost ruby'));
    const debug: string[] = [];
    const pool = newPool({ compressionLimits: { windowBytes: 2 * 1024 * 1024, minSaving: 0.03, probeAfterBytes: 1024 ** 3, probeAfterMs: 600_000, maxBackoff: 8 }, debug: (m) => debug.push(m) });
    const builderSwitches: unknown[] = [];
    pool.on('compression', (...event) => builderSwitches.push(event));
    const machine = await load(config);
    expect(machine.proxy).toMatchObject({ jump: { hostName: 'jump1', compression: true } });
    // Zeros, which the builder's link (not compressed) encrypts before they reach the jump host's.
    const result = await pool.exec(machine, 'head -c 8388608 /dev/zero', { maxReplyBytes: 16 * 1024 * 1024 });
    expect(result.stdout.length).toBe(8 * 1024 * 1024);
    expect(pool.negotiated('ruby')).toMatchObject({ cs: { compress: 'none' }, sc: { compress: 'none' } });
    await expect.poll(() => debug.filter((line) => line.includes('compressing')), { timeout: 10_000 }).toEqual([
      expect.stringMatching(/^jump host jump1 of ruby: stopped compressing downloads: zlib saved \d+\.\d % of \d+\.\d MiB, not worth its CPU$/),
    ]);
    // A jump host is no builder: the pool's events are the builders' links' only.
    expect(builderSwitches).toEqual([]);
    // The rekeyed hop still carries the builder's link.
    expect((await pool.exec(machine, 'echo still there')).stdout).toBe('still there\n');
    await pool.closeAll();
  });

  it('runs a ProxyCommand (ssh -W through jump1) as the transport, and ends it with the connection', async () => {
    const config = sshConfig('proxy_command', [`ProxyCommand ssh -F ${cluster.sshConfigFile} -W %h:%p jump1`]);
    const pool = newPool();
    const machine = await load(config);
    expect(machine.proxy).toEqual({ command: `ssh -F ${cluster.sshConfigFile} -W 127.0.0.1:${ruby().port} jump1` });
    const port = await clientPort(pool, machine);
    expect(portOwnedBy(port, cluster.processes('jump1'))).toBe(true);
    const sshClients = () => cluster.processes('jump1').length;
    const during = sshClients();
    await pool.closeAll();
    // jump1's per-connection sshd goes once the proxy's ssh ends.
    for (let i = 0; i < 100 && sshClients() >= during; i++) await new Promise((r) => setTimeout(r, 50));
    expect(sshClients()).toBeLessThan(during);
  });

  it('says why a ProxyCommand failed, with what it printed', async () => {
    const config = sshConfig('failing_proxy', ["ProxyCommand sh -c 'echo no route to %h >&2; exit 3'"]);
    const error = await newPool().connect(await load(config)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProxyCommandError);
    expect((error as Error).message).toBe(
      `cannot reach ruby through ProxyCommand "sh -c 'echo no route to 127.0.0.1 >&2; exit 3'": it exited with code 3 before the SSH login was done; it printed: no route to 127.0.0.1`,
    );
  });

  it('names the jump host when it cannot forward (ruby itself as a jump host: AllowTcpForwarding no)', async () => {
    const config = sshConfig('no_forwarding', ['ProxyJump rubyjump']);
    const rubyJump = ['Host rubyjump', '  HostName 127.0.0.1', `  Port ${ruby().port}`, '  User root', `  IdentityFile ${cluster.clientKey}`, '  HostKeyAlias ruby', `  UserKnownHostsFile ${cluster.knownHostsFile}`];
    writeFileSync(config, `${readFileSync(config, 'utf8')}\n${rubyJump.join('\n')}\n`);
    const error = await newPool().connect(await load(config)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JumpHostError);
    expect((error as Error).message).toMatch(/^cannot reach ruby through jump host rubyjump: cannot reach ruby at 127\.0\.0\.1:\d+: jump host rubyjump could not open a connection to it: \S/);
  });

  it('honours ConnectTimeout and ServerAlive* of ssh_config on the connection', async () => {
    const pool = newPool({ connectTimeoutMs: 30_000, keepaliveIntervalMs: 60_000, keepaliveCountMax: 5 });
    const machine = await load(sshConfig('timeouts', ['ConnectTimeout 1', 'ServerAliveInterval 1', 'ServerAliveCountMax 2']));
    expect(machine).toMatchObject({ connectTimeoutMs: 1000, keepaliveIntervalMs: 1000, keepaliveCountMax: 2 });
    await pool.connect(machine);
    const down = new Promise<ConnectionLostError>((resolve) => pool.once('down', (_host, error) => resolve(error as ConnectionLostError)));
    cluster.pause('ruby');
    try {
      const lost = await down;
      expect(lost.message).toBe('connection to ruby lost: no answer to 2 keep-alives 1000 ms apart');
      // A new connection to the hung sshd gives up after ConnectTimeout, not the pool's 30 s.
      const error = await pool.connect(machine).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HostUnreachableError);
      expect((error as Error).message).toContain('no SSH handshake within 1 s');
    } finally {
      cluster.resume('ruby');
    }
  });

  it('takes NIX_SSHOPTS as ssh command-line options: -F, -p, -l, -o reach the connection; the rest is named in one warning', async () => {
    // ruby's block says nothing of port, user, key or host key: NIX_SSHOPTS gives them all.
    const config = join(dir, 'nix_sshopts');
    writeFileSync(config, `Host ruby\n  HostName 127.0.0.1\n  Port 1\n\n${readFileSync(cluster.sshConfigFile, 'utf8').replace(/Host ruby\n[\s\S]*?(?=\nHost |$)/, '')}`);
    const sshOpts = [
      `-F ${config}`,
      `-p ${ruby().port}`,
      '-l root',
      `-oIdentityFile=${cluster.clientKey}`,
      '-o HostKeyAlias=ruby',
      `-o "UserKnownHostsFile ${cluster.knownHostsFile}"`,
      '-o ProxyJump=jump1',
      '-o ControlMaster=auto -o ControlPersist=60',
      '-v -x',
    ].join(' ');
    const env = { ...NIX_ENV, NIX_SSHOPTS: sshOpts };
    const before = forwardedTo('jump1').length;
    const roots = await instantiateExpr('[ (mk { name = "nix-sshopts"; sleep = "0"; }) ]');
    const r = await offload(['build', ...roots, '--machines', machinesFile(), '--max-jobs', '0', '--no-out-link', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(parseJson(r).jobs.map((j) => [j.host, j.status])).toEqual([['ruby', 'built']]);
    expect(forwardedTo('jump1').slice(before)).toContain(ruby().port);
    const warnings = r.stderr.split('\n').filter((line) => /^offload: (NIX_SSHOPTS|ssh_config)/.test(line));
    expect(warnings.filter((l) => l.includes('NIX_SSHOPTS: offload makes its own SSH connections and does not use -v'))).toHaveLength(1);
    expect(warnings.filter((l) => l.includes('ssh_config options offload cannot honour, ignored: ControlMaster (ruby; offload keeps one connection per builder itself), ControlPersist (ruby;'))).toHaveLength(1);
    expect(warnings.filter((l) => l.includes('ControlMaster'))).toHaveLength(1);

    const listing = await offload(['machines', '--machines', machinesFile(), '--json'], env);
    const shown = (JSON.parse(listing.stdout) as { machines: { port: number; user: string; route: unknown[] }[] }).machines[0]!;
    expect(shown).toMatchObject({ port: ruby().port, user: 'root', route: [{ jumpHost: 'jump1', user: 'root', address: '127.0.0.1', port: cluster.builder('jump1').port }] });
  });
});
