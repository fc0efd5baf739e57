import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { offload, type CliResult } from './buildSupport.js';
import { instantiateExpr } from './faultSupport.js';

/**
 * Bad input (machines file, key files, .drv files, a derivation no host
 * fits) through the CLI: one line naming what is wrong and where, the exit
 * code from the table, no stack trace unless --debug, and no connection to
 * any builder. The only "builder" is a tripwire that counts connections.
 */
describe.runIf(integrationPrereqs())('offload build with bad input', () => {
  let dir: string;
  let tripwire: Server;
  let connections = 0;
  let key: string;
  let machines: string;
  let drv: string;

  const machine = (over: Record<string, unknown> = {}) => ({
    hostName: '127.0.0.1',
    port: (tripwire.address() as { port: number }).port,
    sshUser: 'root',
    sshKey: key,
    systems: ['x86_64-linux'],
    maxJobs: 2,
    ...over,
  });
  const write = (name: string, content: unknown) => {
    const file = join(dir, name);
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'offload-fault-input-'));
    tripwire = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => tripwire.listen(0, '127.0.0.1', resolve));
    key = join(dir, 'id_ed25519');
    await promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    machines = write('machines.json', [machine()]);
    drv = (await instantiateExpr('mk { name = "input-case"; }'))[0]!;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => tripwire?.close(() => resolve()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs offload, expecting nobody to have connected to the tripwire. */
  async function refused(args: string[]): Promise<CliResult> {
    const before = connections;
    const r = await offload(['build', ...args, '--max-jobs', '0']);
    expect(connections - before, r.stderr).toBe(0);
    return r;
  }

  function oneLine(r: CliResult, code: number): string {
    expect(r.code, r.stderr).toBe(code);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stdout).toBe('');
    return lines[0]!;
  }

  it('connects to the tripwire when the input is fine (so the tests below would notice a connection)', async () => {
    const before = connections;
    const r = await offload(['build', drv, '--machines', machines, '--max-jobs', '0', '--connect-timeout', '1']);
    expect(r.code, r.stderr).toBe(1);
    expect(connections).toBeGreaterThan(before);
  });

  it('names the file, machine and field of a malformed machines file, exits 2 and shows the stack only with --debug', async () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['bad-json.json', '[{"hostName": "a", ', /bad-json\.json:1:\d+: invalid JSON: /],
      ['wrong-type.json', [machine({ systems: 'x86_64-linux' })], /wrong-type\.json: machine 1 \(127\.0\.0\.1\): field "systems": expected a non-empty list/],
      ['unknown-field.json', [machine({ colour: 'red' })], /unknown-field\.json: machine 1 \(127\.0\.0\.1\): unknown field "colour"/],
      ['bad-key.json', [machine({ publicHostKey: '!!not base64' })], /bad-key\.json: machine 1 \(127\.0\.0\.1\): field "publicHostKey": expected base64/],
    ];
    for (const [name, content, message] of cases) {
      const file = write(name, content);
      expect(oneLine(await refused([drv, '--machines', file]), 2)).toMatch(message);
    }
    const debug = await refused([drv, '--machines', join(dir, 'unknown-field.json'), '--debug']);
    expect(debug.code).toBe(2);
    expect(debug.stderr).toMatch(/unknown field "colour"[^]*\n\s+at /);
  });

  it('refuses a missing, non-file or group/world-readable key file in one line naming it, before connecting', async () => {
    const open = join(dir, 'open_key');
    copyFileSync(key, open);
    chmodSync(open, 0o644);
    const cases: Array<[string, RegExp]> = [
      [join(dir, 'no_such_key'), /SSH key .*no_such_key for host 127\.0\.0\.1 does not exist/],
      [dir, /SSH key .* for host 127\.0\.0\.1 is not a regular file/],
      [open, /SSH key .*open_key for host 127\.0\.0\.1 is accessible by group or others \(mode 0644\).*chmod 600/],
    ];
    for (const [file, message] of cases) {
      const m = write('key-case.json', [machine({ sshKey: file })]);
      expect(oneLine(await refused([drv, '--machines', m]), 2)).toMatch(message);
    }
  });

  it('names the .drv file and where it breaks for missing, truncated and odd-character derivations, before connecting', async () => {
    // A private store directory, so broken .drv files never touch /nix/store.
    const store = join(dir, 'store');
    mkdirSync(store);
    const text = readFileSync(drv, 'utf8').replaceAll('/nix/store/', `${store}/`);
    const name = basename(drv);
    const put = (content: string) => {
      writeFileSync(join(store, name), content);
      return [join(store, name), '--store-dir', store, '--machines', machines];
    };
    const missing = `/nix/store/${'a'.repeat(32)}-missing.drv`;
    expect(oneLine(await refused([missing, '--machines', machines]), 2)).toBe(`offload: derivation ${missing}, requested as a root, does not exist.`);
    expect(oneLine(await refused(put(text.slice(0, 120))), 2)).toMatch(new RegExp(`at line 1 col \\d+ \\(byte \\d+\\) in ${join(store, name)}`));
    const odd = text.replace(/-input-case"/, '-input;case"');
    expect(oneLine(await refused(put(odd)), 2)).toMatch(/its name has the invalid character ";"\) at line 1 col \d+ \(byte \d+\) in /);
    const root = `/nix/store/${'a'.repeat(32)}-we$rd.drv`;
    expect(oneLine(await refused([root, '--machines', machines]), 2)).toMatch(/"\/nix\/store\/a+-we\$rd\.drv" is not a valid store path: its name has the invalid character "\$"/);
    const debug = await refused([...put(odd), '--debug']);
    expect(debug.stderr).toMatch(/invalid character[^]*\n\s+at /);
  });

  it('names the derivation, its system and features and each host with its reason when nothing fits (exit 1)', async () => {
    const [gpu] = await instantiateExpr('mk { name = "needs-gpu"; features = [ "gpu" ]; }');
    const m = write('no-gpu.json', [machine({ supportedFeatures: ['kvm'] }), machine({ hostName: 'localhost', systems: ['aarch64-linux'] })]);
    const line = oneLine(await refused([gpu!, '--machines', m]), 1);
    expect(line).toBe(
      `offload: no machine can build ${gpu} (system x86_64-linux, features {gpu}): local: lacks feature gpu; 127.0.0.1: lacks feature gpu; localhost: system aarch64-linux only`,
    );
  });
});
