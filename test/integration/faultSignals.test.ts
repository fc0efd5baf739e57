import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteSlotLeases } from '../../src/slots/sqliteSlotLeases.js';
import { defaultBuilders, startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { maxOverlap, NIX_ENV, offload, parseJson, stamps, startOffload } from './buildSupport.js';
import { buildCount, building, commandLines, eventually, instantiateExpr, sleep, wideExpr } from './faultSupport.js';

const run = promisify(execFile);

/** Exit code of a nix-store command (0 = success). */
async function nixStore(args: string[]): Promise<number> {
  try {
    await run('nix-store', args, { env: NIX_ENV });
    return 0;
  } catch (error) {
    const { code, stderr } = error as { code?: number; stderr?: string };
    // The exit code is what the tests assert; what Nix said is what explains a failure.
    if (stderr) process.stderr.write(`nix-store ${args.join(' ')}: ${stderr}\n`);
    return code ?? 1;
  }
}

/** TCP connections of a process to 127.0.0.1:port, from /proc/net/tcp and its socket inodes. */
function tcpConnections(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // Closed while we looked.
    }
  }
  const remote = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[2] === remote && inodes.has(f[9] ?? '')).length;
}

/** `nix-store --serve` children of a process, with the bytes each has read so far. */
function serveChildren(pid: number): Array<{ pid: number; read: number }> {
  const found: Array<{ pid: number; read: number }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').startsWith('nix-store\0--serve')) continue;
      const rchar = /^rchar: (\d+)$/m.exec(readFileSync(`/proc/${entry}/io`, 'utf8'));
      found.push({ pid: Number(entry), read: Number(rchar?.[1] ?? 0) });
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}

/**
 * Interrupts (SIGINT, SIGTERM, SIGKILL mid-import) and two runs sharing the
 * builders (docs/faults.md). One cluster for the file.
 */
describe.runIf(integrationPrereqs())('offload build when interrupted or run twice at once', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let machines: string[];

  beforeAll(async () => {
    // DEBUG1: sshd logs each signal a client sends on a channel.
    cluster = await startTempCluster('fault-signals', defaultBuilders().map((b) => ({ ...b, sshdLogLevel: 'DEBUG1' as const })));
    machines = ['--machines', cluster.machinesFile, '--ssh-config', cluster.sshConfigFile, '--max-jobs', '0'];
  });
  afterAll(async () => {
    await cluster?.dispose();
  });

  const slotKey = (name: string) => `127.0.0.1:${cluster.builder(name).port}`;

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`stops remote builds on ${signal}, releases the slots, keeps finished outputs valid and exits 130`, async () => {
      const roots = await instantiateExpr(
        '[ (mk { name = "quick-1"; sleep = "0"; }) (mk { name = "quick-2"; sleep = "0"; }) (mk { name = "long-1"; sleep = "120"; }) (mk { name = "long-2"; sleep = "120"; }) ]',
      );
      const cli = startOffload(['build', ...roots, ...machines, '--hosts', 'aquamarine,ruby', '--copy-back', 'all', '--json']);
      const quickOutputs = await Promise.all(roots.slice(0, 2).map(async (d) => (await run('nix-store', ['--query', '--outputs', d], { env: NIX_ENV })).stdout.trim()));
      const quickBack = () => quickOutputs.every((out) => existsSync(out));
      const longBuilds = () => buildCount(cluster, 'aquamarine') + buildCount(cluster, 'ruby') === 2;
      const leases = new SqliteSlotLeases();
      try {
        expect(await eventually(() => longBuilds() && quickBack(), 20_000)).toBe(true);
        // The quick builds are in the local store; give the run a moment to count them as built.
        await sleep(500);
        // Both long builds hold slots, in the file every offload process shares.
        expect((await leases.inUse(slotKey('aquamarine'))) + (await leases.inUse(slotKey('ruby')))).toBeGreaterThanOrEqual(2);
        const signalledAt = Date.now();
        cli.child.kill(signal);
        const r = await cli.result;
        expect(r.code, r.stderr).toBe(130);
        expect(Date.now() - signalledAt).toBeLessThan(5_000);
        // The remote nix-store processes and their builds are gone, not left to run for two minutes.
        const remoteGone = () => ['aquamarine', 'ruby'].every((b) => !building(cluster, b) && !commandLines(cluster, b).some((c) => c.includes('nix-store --serve')));
        expect(await eventually(remoteGone, 5_000)).toBe(true);
        // Each long build's serve channel got a signal request before it was closed. (sshd 9.2
        // delivers it only for non-root logins, "session signalling requires privilege
        // separation"; the cluster logs in as root, so the request is what can be seen here.)
        for (const b of ['aquamarine', 'ruby']) {
          const sshdLog = readFileSync(cluster.builder(b).sshdLog, 'utf8');
          expect(sshdLog, b).toMatch(/session_input_channel_req: session \d+ req signal/);
          expect(sshdLog, b).not.toMatch(/unsupported signal/);
        }
        expect((await leases.inUse(slotKey('aquamarine'))) + (await leases.inUse(slotKey('ruby')))).toBe(0);
        expect(r.stderr).toMatch(/2 built, 2 interrupted in [\d.]+ s/);
        const json = parseJson(r);
        expect(Object.values(json.outputs).map((o) => o.out!).sort()).toEqual([...quickOutputs].sort());
        for (const out of quickOutputs) {
          expect(await nixStore(['--check-validity', out])).toBe(0);
          expect(await nixStore(['--verify-path', out])).toBe(0);
        }
      } finally {
        await leases.close();
        cli.child.kill('SIGKILL');
      }
    });
  }

  it('a second interrupt exits at once with 130 while the first interrupt still cleans up after a hung local nix-store', async () => {
    // ~150 MB output, so the copy back to the local store takes a moment.
    const [drv] = await instantiateExpr(
      'derivation { name = "hung-cleanup"; inherit nonce; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "/usr/bin/head -c 150000000 /dev/zero > $out" ]; }',
    );
    const cli = startOffload(['build', drv!, ...machines, '--hosts', 'ruby']);
    let hung: number | undefined;
    try {
      const pid = cli.child.pid!;
      expect(await eventually(() => serveChildren(pid).some((c) => c.read > 50_000_000), 60_000, 20)).toBe(true);
      // A hung local store mid-import: the first interrupt stops it, and offload's exit waits for it to go
      // (SIGKILL after 5 s). A hung builder no longer holds the exit: its connection closes without an answer.
      hung = serveChildren(pid).find((c) => c.read > 50_000_000)!.pid;
      process.kill(hung, 'SIGSTOP');
      cli.child.kill('SIGINT');
      const first = await Promise.race([cli.result, sleep(500).then(() => undefined)]);
      expect(first, 'the first interrupt should still be cleaning up, so the second one has something to cut short').toBeUndefined();
      cli.child.kill('SIGINT');
      const r = await Promise.race([cli.result, sleep(10_000).then(() => undefined)]);
      expect(r, 'still running 10 s after the second SIGINT').toBeDefined();
      expect(r!.code, r!.stderr).toBe(130);
      expect(r!.stderr).toContain('interrupted again; exiting now without cleaning up');
      // Cut short: the summary the first interrupt would have printed never came.
      expect(r!.stderr).not.toMatch(/interrupted in [\d.]+ s/);
    } finally {
      if (hung !== undefined) {
        try {
          process.kill(hung, 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
      cli.child.kill('SIGKILL');
    }
  });

  it('a first interrupt abandons a connect that hangs (no waiting for the connect timeout)', async () => {
    const roots = await instantiateExpr('[ (mk { name = "never-connected"; sleep = "0"; }) ]');
    cluster.pause('kana');
    try {
      const cli = startOffload(['build', ...roots, ...machines, '--hosts', 'kana', '--connect-timeout', '600']);
      // The paused sshd's kernel completes the TCP handshake; the SSH banner never comes.
      expect(await eventually(() => tcpConnections(cli.child.pid!, cluster.builder('kana').port) > 0, 20_000)).toBe(true);
      const started = Date.now();
      cli.child.kill('SIGINT');
      const r = await Promise.race([cli.result, sleep(60_000).then(() => undefined)]);
      expect(r, 'still waiting for the 600 s connect timeout a minute after SIGINT').toBeDefined();
      expect(r!.code, r!.stderr).toBe(130);
      expect(r!.stderr).toContain('interrupted; stopping the builds and closing connections');
      expect(Date.now() - started).toBeLessThan(60_000);
    } finally {
      cluster.resume('kana');
    }
  });

  it('leaves no half-registered path when killed mid-import, and a rerun completes', async () => {
    // ~150 MB output, so the copy back to the local store takes a moment.
    const [drv] = await instantiateExpr(
      'derivation { name = "big"; inherit nonce; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "/usr/bin/head -c 150000000 /dev/zero > $out" ]; }',
    );
    const { stdout } = await run('nix-store', ['--query', '--outputs', drv!], { env: NIX_ENV });
    const out = stdout.trim();
    const cli = startOffload(['build', drv!, ...machines, '--hosts', 'ruby']);
    const pid = cli.child.pid!;
    // Kill offload once the local nix-store has read a third of the NAR.
    const midImport = await eventually(() => serveChildren(pid).some((c) => c.read > 50_000_000), 60_000, 20);
    expect(midImport).toBe(true);
    cli.child.kill('SIGKILL');
    await cli.result;
    const valid = (await nixStore(['--check-validity', out])) === 0;
    if (valid) expect(await nixStore(['--verify-path', out])).toBe(0);
    expect(valid).toBe(false);

    const again = await offload(['build', drv!, ...machines, '--hosts', 'ruby']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim()).toBe(out);
    expect(await nixStore(['--verify-path', out])).toBe(0);
    expect(statSync(out).size).toBe(150_000_000);
  });

  it('never runs more than a builder\'s maxJobs builds when two runs share it', async () => {
    const [first] = await instantiateExpr(wideExpr('twin-a', 6, '1'));
    const [second] = await instantiateExpr(wideExpr('twin-b', 6, '1'));
    const args = [...machines, '--hosts', 'aquamarine', '--json'];
    const [a, b] = await Promise.all([offload(['build', first!, ...args]), offload(['build', second!, ...args])]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const builds = [a, b].flatMap((r, i) => stamps(Object.values(parseJson(r).outputs)[0]!.out!).filter((s) => s.name !== `twin-${'ab'[i]}-top`));
    expect(builds).toHaveLength(12);
    // aquamarine has maxJobs 3: each run alone would start 3, together without shared slots 6.
    expect(maxOverlap(builds)).toBeLessThanOrEqual(cluster.builder('aquamarine').maxJobs);
    expect(maxOverlap(builds)).toBeGreaterThanOrEqual(2);
  });
});
