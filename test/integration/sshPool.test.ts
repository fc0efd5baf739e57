import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/cluster/ports.js';
import { loadMachinesConfig } from '../../src/config/loadMachines.js';
import type { Machine } from '../../src/config/machine.js';
import { ExitCode } from '../../src/errors/offloadError.js';
import {
  AuthenticationError,
  ChannelOpenError,
  ConnectionLostError,
  HostKeyMismatchError,
  HostUnreachableError,
  ProbeReplyTooLargeError,
  ProbeTimeoutError,
  UnknownHostKeyError,
} from '../../src/remote/sshErrors.js';
import { SshPool } from '../../src/remote/sshPool.js';
import { prepareLogin, sshLogin } from '../../src/remote/sshLogin.js';
import { startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';

const run = promisify(execFile);

describe.runIf(integrationPrereqs())('SshPool against the test cluster', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  const pools: SshPool[] = [];
  const newPool = (...args: ConstructorParameters<typeof SshPool>) => {
    const pool = new SshPool({ knownHostsFiles: [join(cluster.dir, 'empty_known_hosts')], ...args[0] });
    pools.push(pool);
    return pool;
  };

  function machine(name: string, overrides: Partial<Machine> = {}): Machine {
    const b = cluster.builder(name);
    return {
      hostName: name,
      address: '127.0.0.1',
      port: b.port,
      sshUser: 'root',
      sshKey: cluster.clientKey,
      systems: b.systems,
      supportedFeatures: b.features,
      mandatoryFeatures: b.mandatoryFeatures,
      maxJobs: b.maxJobs,
      speedFactor: b.speedFactor,
      publicHostKey: b.publicHostKey,
      ...overrides,
    };
  }

  /** Successful logins so far, from the builder's sshd log (LogLevel VERBOSE). */
  const logins = (name: string) => (readFileSync(cluster.builder(name).sshdLog, 'utf8').match(/Accepted publickey for root/g) ?? []).length;

  const commandsOn = (name: string) =>
    cluster.processes(name).map((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      } catch {
        return '';
      }
    });

  beforeAll(async () => {
    cluster = await startTempCluster('sshpool');
    writeFileSync(join(cluster.dir, 'empty_known_hosts'), '');
  });
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((pool) => pool.closeAll()));
    for (const b of cluster.builders) cluster.resume(b.name);
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  it('connects with the pinned host key and runs a probe', async () => {
    const result = await newPool().exec(machine('aquamarine'), 'nix-store --version');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^nix-store \(Nix\) \d/);
  });

  it('reaches every builder as configured by machines.json + ssh_config through the config loader', async () => {
    const config = await loadMachinesConfig({
      machinesFile: cluster.machinesFile,
      sshConfigFile: cluster.sshConfigFile,
      env: {},
    });
    expect(config.machines.map((m) => [m.hostName, m.address, m.port])).toEqual(
      cluster.builders.map((b) => [b.name, '127.0.0.1', b.port]),
    );
    const pool = newPool();
    const names = await Promise.all(config.machines.map((m) => pool.exec(m, 'echo $NIX_REMOTE')));
    expect(names.map((r) => r.stdout.trim())).toEqual(['local', 'local', 'local']);
  });

  it('negotiates AES-GCM and no compression by default; zlib with --compress or ssh_config Compression yes', async () => {
    const plain = newPool();
    await plain.connect(machine('aquamarine'));
    // AES-GCM runs in OpenSSL and needs no separate MAC; chacha20 or CTR + HMAC would cost more per byte.
    expect(plain.negotiated('aquamarine')).toMatchObject({
      cs: { cipher: 'aes128-gcm@openssh.com', compress: 'none' },
      sc: { cipher: 'aes128-gcm@openssh.com', compress: 'none' },
    });
    const compressed = newPool({ compress: true });
    await compressed.connect(machine('aquamarine'));
    expect(compressed.negotiated('aquamarine')).toMatchObject({ cs: { compress: 'zlib@openssh.com' }, sc: { compress: 'zlib@openssh.com' } });
    const perHost = newPool();
    await perHost.connect(machine('ruby', { compression: true }));
    expect(perHost.negotiated('ruby')).toMatchObject({ cs: { compress: 'zlib@openssh.com' }, sc: { compress: 'zlib@openssh.com' } });
    // Compressed or not, the link carries the serve protocol.
    expect((await compressed.exec(machine('aquamarine'), 'head -c 100000 /dev/zero | wc -c')).stdout.trim()).toBe('100000');
  });

  it('runs 5 parallel commands over one connection', async () => {
    const before = logins('ruby');
    const pool = newPool();
    const m = machine('ruby');
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => pool.exec(m, `sleep 0.3; echo ${i}`)));
    expect(results.map((r) => r.stdout.trim())).toEqual(['1', '2', '3', '4', '5']);
    expect(logins('ruby') - before).toBe(1);
  });

  it('reports exit codes and stderr of a probe', async () => {
    const result = await newPool().exec(machine('kana'), 'echo oops >&2; exit 3');
    expect(result).toEqual({ stdout: '', stderr: 'oops\n', code: 3 });
  });

  it('stops reading a probe reply past its byte cap and says so, leaving the connection usable', async () => {
    const pool = newPool();
    const m = machine('aquamarine');
    const error = await pool.exec(m, 'head -c 300000 /dev/zero', { maxReplyBytes: 100_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProbeReplyTooLargeError);
    expect((error as Error).message).toBe('aquamarine sent more than 98 KiB on stdout in answer to "head -c 300000 /dev/zero"; offload stopped reading it');
    const flood = await pool.exec(m, 'head -c 2000000 /dev/zero >&2').catch((e: unknown) => e);
    expect((flood as Error).message).toContain('more than 1024 KiB on stderr');
    expect((await pool.exec(m, 'echo ok')).stdout).toBe('ok\n');
  });

  it('opens nix-store --serve --write as a transport that speaks the serve handshake', async () => {
    const pool = newPool();
    const transport = await pool.openServe(machine('kana'));
    expect(transport.host).toBe('kana');
    const hello = Buffer.alloc(16);
    hello.writeBigUInt64LE(0x390c9debn, 0);
    hello.writeBigUInt64LE(0x206n, 8);
    transport.stdin.write(hello);
    const reply = await new Promise<Buffer>((resolve) => {
      let got = Buffer.alloc(0);
      const onData = (data: Buffer) => {
        got = Buffer.concat([got, data]);
        if (got.length >= 16) {
          transport.stdout.off('data', onData);
          resolve(got);
        }
      };
      transport.stdout.on('data', onData);
    });
    expect(reply.readBigUInt64LE(0)).toBe(0x5452eecbn);
    expect(Number(reply.readBigUInt64LE(8)) >> 8).toBe(2);
    const closed = new Promise((resolve) => transport.stdout.once('close', resolve));
    transport.close();
    await closed;
    // The connection outlives the channel.
    expect(pool.isConnected('kana')).toBe(true);
    expect((await pool.exec(machine('kana'), 'true')).code).toBe(0);
  });

  it('refuses a host whose key differs from the pinned one before logging in', async () => {
    const before = logins('aquamarine');
    const wrongPin = cluster.builder('ruby').publicHostKey;
    const attempt = newPool().exec(machine('aquamarine', { publicHostKey: wrongPin }), 'touch /tmp/should-not-run');
    const error = await attempt.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HostKeyMismatchError);
    expect((error as HostKeyMismatchError).exitCode).toBe(ExitCode.hostsUnusable);
    expect((error as Error).message).toContain(`aquamarine (127.0.0.1:${cluster.builder('aquamarine').port})`);
    expect(logins('aquamarine')).toBe(before);
  });

  it('refuses an unknown host key and says which publicHostKey would pin it', async () => {
    const error = await newPool()
      .connect(machine('kana', { publicHostKey: undefined }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnknownHostKeyError);
    expect((error as UnknownHostKeyError).publicHostKey).toBe(cluster.builder('kana').publicHostKey);
    expect((error as Error).message).toContain(`ssh-keyscan -p ${cluster.builder('kana').port} -t ed25519 127.0.0.1`);
  });

  it('accepts a host key recorded under HostKeyAlias, but not under the bare alias without it', async () => {
    // cluster.knownHostsFile lists each builder's key under its bare name.
    const viaAlias = machine('kana', { publicHostKey: undefined, userKnownHostsFiles: [cluster.knownHostsFile], hostKeyAlias: 'kana' });
    expect((await newPool().exec(viaAlias, 'true')).code).toBe(0);
    // Without HostKeyAlias ssh looks up [127.0.0.1]:port: a key for "kana" must not vouch for that address.
    const bare = machine('kana', { publicHostKey: undefined, userKnownHostsFiles: [cluster.knownHostsFile] });
    expect(await newPool().connect(bare).catch((e: unknown) => e)).toBeInstanceOf(UnknownHostKeyError);
  });

  it('always reads the global known_hosts files too, and their @revoked lines apply whatever the user file says', async () => {
    const ruby = cluster.builder('ruby');
    const global = join(cluster.dir, 'global_known_hosts');
    const user = join(cluster.dir, 'user_known_hosts_for_global');
    writeFileSync(global, `[127.0.0.1]:${ruby.port} ${ruby.hostKeyLine}\n`);
    writeFileSync(user, '');
    const m = machine('ruby', { publicHostKey: undefined, userKnownHostsFiles: [user], globalKnownHostsFiles: [global] });
    expect((await newPool().exec(m, 'true')).code).toBe(0);
    // The user file lists the key; the global file revokes it.
    writeFileSync(user, `[127.0.0.1]:${ruby.port} ${ruby.hostKeyLine}\n`);
    writeFileSync(global, `@revoked * ${ruby.hostKeyLine}\n`);
    const error = await newPool().connect(m).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HostKeyMismatchError);
    expect((error as Error).message).toContain('marked @revoked');
    expect((error as Error).message).toContain(`${global}:1`);
  });

  it('accepts a host key found in known_hosts, hashed or not, and unknown keys when told to', async () => {

    const hashedFile = join(cluster.dir, 'hashed_known_hosts');
    writeFileSync(hashedFile, `[127.0.0.1]:${cluster.builder('ruby').port} ${cluster.builder('ruby').hostKeyLine}\n`);
    await run('ssh-keygen', ['-H', '-f', hashedFile]);
    expect(readFileSync(hashedFile, 'utf8')).toMatch(/^\|1\|/);
    const viaHashed = machine('ruby', { publicHostKey: undefined, userKnownHostsFiles: [hashedFile] });
    expect((await newPool().exec(viaHashed, 'true')).code).toBe(0);

    const recorded = join(cluster.dir, 'accept_new_known_hosts');
    const trusting = machine('ruby', { publicHostKey: undefined, acceptUnknownHostKey: true, strictHostKeyChecking: 'accept-new', userKnownHostsFiles: [recorded] });
    expect((await newPool().exec(trusting, 'true')).code).toBe(0);
    expect(readFileSync(recorded, 'utf8')).toBe(`[127.0.0.1]:${cluster.builder('ruby').port} ${cluster.builder('ruby').hostKeyLine}\n`);
  });

  it('reports a closed port as unreachable, naming the address', async () => {
    const port = await freePort();
    const error = await newPool()
      .connect(machine('ruby', { port }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HostUnreachableError);
    expect((error as Error).message).toBe(`cannot reach ruby at 127.0.0.1:${port}: connection refused (no sshd listening on that port)`);
  });

  it('reports a refusal that came before the login was ready to listen the same way', async () => {
    // The route's TCP connection is opened before the keys are read (remote/sshRoute.ts): here the refusal
    // arrives while they are still being read, before ssh2 has a listener on the socket.
    const port = await freePort();
    const target = machine('ruby', { port });
    const sock = connect({ host: '127.0.0.1', port });
    const refused = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    const settings = {
      connectTimeoutMs: 5_000,
      keepalive: { intervalMs: 5_000, countMax: 3 },
      compress: false,
      knownHostsFiles: [join(cluster.dir, 'empty_known_hosts')],
      globalKnownHostsFiles: [],
      debug: () => undefined,
      warn: () => undefined,
      closing: () => false,
      onClose: () => undefined,
    };
    const prepared = refused.then(() => prepareLogin(target, 'ruby', settings));
    const error = await sshLogin(target, 'ruby', new Client(), sock, { ...settings, prepared }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HostUnreachableError);
    expect((error as Error).message).toBe(`cannot reach ruby at 127.0.0.1:${port}: connection refused (no sshd listening on that port)`);
  });

  it('gives up on a host that accepts TCP but never answers, after the connect timeout', async () => {
    cluster.pause('ruby');
    const started = Date.now();
    const error = await newPool({ connectTimeoutMs: 700 })
      .connect(machine('ruby'))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HostUnreachableError);
    expect((error as Error).message).toContain('no SSH handshake within 0.7 s');
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('reports a refused key as an authentication error naming user and key file', async () => {
    const otherKey = join(cluster.dir, 'other_key');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey]);
    const error = await newPool()
      .connect(machine('aquamarine', { sshKey: otherKey }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).message).toContain(`aquamarine refused login as root: offered key file ${otherKey}`);
  });

  it('bounds a probe: a command that never ends, or a hung builder, fails with ProbeTimeoutError, and the connection serves again', async () => {
    // Keep-alives far beyond the test's length: only the probe's own bound can end these.
    const pool = newPool({ keepaliveIntervalMs: 600_000 });
    const m = machine('kana');
    const slow = await pool.exec(m, 'sleep 30', { timeoutMs: 500 }).catch((e: unknown) => e);
    expect(slow).toBeInstanceOf(ProbeTimeoutError);
    expect((slow as Error).message).toBe('kana gave no complete answer to "sleep 30" within 0.5 s');
    expect((await pool.exec(m, 'echo ok', { timeoutMs: 30_000 })).stdout).toBe('ok\n');
    cluster.pause('kana');
    try {
      const hung = await pool.exec(m, 'cat /proc/loadavg', { timeoutMs: 1_000 }).catch((e: unknown) => e);
      expect(hung).toBeInstanceOf(ProbeTimeoutError);
    } finally {
      cluster.resume('kana');
    }
    expect((await pool.exec(m, 'echo back', { timeoutMs: 30_000 })).stdout).toBe('back\n');
  });

  it('detects a hung (SIGSTOPped) builder within the keep-alive bound and reconnects once it is back', async () => {
    const intervalMs = 300;
    const countMax = 2;
    const pool = newPool({ keepaliveIntervalMs: intervalMs, keepaliveCountMax: countMax });
    const m = machine('ruby');
    await pool.connect(m);
    const down = new Promise<{ host: string; error: unknown; at: number }>((resolve) =>
      pool.once('down', (host, error) => resolve({ host, error, at: Date.now() })),
    );
    const pausedAt = Date.now();
    cluster.pause('ruby');
    const event = await down;
    expect(event.host).toBe('ruby');
    expect(event.error).toBeInstanceOf(ConnectionLostError);
    expect((event.error as Error).message).toContain('keep-alives');
    expect(event.at - pausedAt).toBeLessThan(intervalMs * (countMax + 1) + 1_500);
    expect(pool.isConnected('ruby')).toBe(false);

    cluster.resume('ruby');
    expect((await pool.exec(m, 'echo back')).stdout).toBe('back\n');
  });

  it('fails a running command with ConnectionLostError and emits down when the builder is killed', async () => {
    const pool = newPool();
    const m = machine('kana');
    const downs: string[] = [];
    pool.on('down', (host) => downs.push(host));
    await pool.connect(m);
    const running = pool.exec(m, 'sleep 31').catch((e: unknown) => e);
    await expect.poll(() => commandsOn('kana'), { timeout: 5_000 }).toContain('sleep 31');
    await cluster.kill('kana');
    expect(await running).toBeInstanceOf(ConnectionLostError);
    await expect.poll(() => downs).toEqual(['kana']);
    await cluster.startSshd('kana');
  });

  it('turns sshd refusing another channel (MaxSessions) into ChannelOpenError', async () => {
    const limited = await startTempCluster('maxsessions', [{ name: 'tiny', maxSessions: 2 }]);
    try {
      const b = limited.builder('tiny');
      const m = { ...machine('ruby'), hostName: 'tiny', port: b.port, publicHostKey: b.publicHostKey, sshKey: limited.clientKey };
      const pool = newPool();
      const first = await pool.openServe(m);
      const second = await pool.openServe(m);
      const error = await pool.exec(m, 'true').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ChannelOpenError);
      expect((error as Error).message).toContain('tiny refused a new SSH channel with 2 already open');
      expect((error as Error).message).toContain('MaxSessions');
      first.close();
      second.close();
      await expect.poll(async () => (await pool.exec(m, 'echo ok').catch(() => undefined))?.stdout).toBe('ok\n');
    } finally {
      await limited.dispose();
    }
  });

  it('closes a connection left idle, without reporting it down', async () => {
    const pool = newPool({ idleTimeoutMs: 200 });
    const downs: string[] = [];
    pool.on('down', (host) => downs.push(host));
    await pool.exec(machine('aquamarine'), 'true');
    expect(pool.isConnected('aquamarine')).toBe(true);
    await expect.poll(() => pool.isConnected('aquamarine'), { timeout: 3_000 }).toBe(false);
    expect(downs).toEqual([]);
  });

  it('closeAll does not wait for a builder to answer: one that stopped answering closes as fast as the others', async () => {
    const pool = newPool();
    await Promise.all(['aquamarine', 'ruby'].map((name) => pool.connect(machine(name))));
    cluster.pause('ruby');
    try {
      const start = performance.now();
      await pool.closeAll();
      // A peer that never answers the disconnect is given up on after 2 s; closing our side needed no answer at all.
      expect(performance.now() - start).toBeLessThan(1_500);
      expect(pool.isConnected('ruby')).toBe(false);
    } finally {
      cluster.resume('ruby');
    }
  });

  it('closeAll ends every connection without down events', async () => {
    const pool = newPool();
    const downs: string[] = [];
    pool.on('down', (host) => downs.push(host));
    await Promise.all(cluster.builders.map((b) => pool.connect(machine(b.name))));
    await pool.closeAll();
    expect(cluster.builders.map((b) => pool.isConnected(b.name))).toEqual([false, false, false]);
    expect(downs).toEqual([]);
  });
});
