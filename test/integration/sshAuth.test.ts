import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, appendFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientAuth } from '../../src/remote/identities.js';
import { sha256Fingerprint } from '../../src/remote/hostKey.js';
import { defaultBuilders, startTempCluster, type TestCluster } from '../support/cluster.js';
import { integrationPrereqs } from '../support/requireIntegration.js';
import { NIX_ENV, offload } from './buildSupport.js';
import { instantiateExpr } from './faultSupport.js';

const run = promisify(execFile);

/** A key pair; with `passphrase` the private key file is encrypted after the agent got it. */
async function keyPair(file: string): Promise<{ publicLine: string; fingerprint: string }> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', file, '-f', file]);
  const publicLine = readFileSync(`${file}.pub`, 'utf8').trim();
  return { publicLine, fingerprint: sha256Fingerprint(Buffer.from(publicLine.split(' ')[1]!, 'base64')) };
}

const encrypt = (file: string) => run('ssh-keygen', ['-q', '-p', '-P', '', '-N', 'correct horse', '-f', file]);

describe.runIf(integrationPrereqs())('SSH login like OpenSSH: ssh-agent and unusable identity files', () => {
  let cluster: TestCluster & { dispose(): Promise<void> };
  let dir: string;
  let agent: ChildProcess;
  let agentSocket: string;
  let home: string;
  let agentKey: { publicLine: string; fingerprint: string };
  let otherAgentKey: { publicLine: string; fingerprint: string };
  let encryptedNamed: string;

  beforeAll(async () => {
    cluster = await startTempCluster('ssh-auth', defaultBuilders().filter((b) => b.name === 'ruby'));
    dir = mkdtempSync(join(tmpdir(), 'offload-ssh-auth-'));
    home = join(dir, 'home');
    mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 });
    agentSocket = join(dir, 'agent.sock');
    agent = spawn('ssh-agent', ['-D', '-a', agentSocket], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !existsSync(agentSocket); i++) await new Promise((r) => setTimeout(r, 50));
    const env = { ...process.env, SSH_AUTH_SOCK: agentSocket };

    // The default identity, passphrase-protected, loaded in the agent; no .pub beside it.
    const defaultKey = join(home, '.ssh', 'id_ed25519');
    agentKey = await keyPair(defaultKey);
    await run('ssh-add', ['-q', defaultKey], { env });
    await encrypt(defaultKey);
    unlinkSync(`${defaultKey}.pub`);
    // A second agent key, and a passphrase-protected key that is not in the agent.
    const other = join(dir, 'other_key');
    otherAgentKey = await keyPair(other);
    await run('ssh-add', ['-q', other], { env });
    encryptedNamed = join(dir, 'encrypted_not_in_agent');
    await keyPair(encryptedNamed);
    await encrypt(encryptedNamed);
    appendFileSync(cluster.authorizedKeysFile, `${agentKey.publicLine}\n${otherAgentKey.publicLine}\n`);
  });
  afterAll(async () => {
    agent?.kill();
    await cluster?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const ruby = () => cluster.builder('ruby');
  /** A machines file without sshKey: keys come from ssh_config, ssh's defaults and the agent. */
  const machinesFile = () => {
    const file = join(dir, 'machines.json');
    const b = ruby();
    writeFileSync(file, JSON.stringify([{ hostName: 'ruby', systems: b.systems, maxJobs: b.maxJobs, publicHostKey: b.publicHostKey }]));
    return file;
  };
  const sshConfig = (name: string, lines: string[]) => {
    const file = join(dir, name);
    writeFileSync(file, ['Host ruby', '  HostName 127.0.0.1', `  Port ${ruby().port}`, '  User root', ...lines.map((l) => `  ${l}`), ''].join('\n'));
    return file;
  };
  /** The key of each login sshd accepted (LogLevel VERBOSE names its fingerprint). */
  const acceptedKeys = () => [...readFileSync(ruby().sshdLog, 'utf8').matchAll(/Accepted publickey for root .* ED25519 (SHA256:\S+)/g)].map((m) => m[1]);
  const build = async (config: string, env: NodeJS.ProcessEnv) => {
    const roots = await instantiateExpr('[ (mk { name = "agent-login"; sleep = "0"; }) ]');
    return offload(['build', ...roots, '--machines', machinesFile(), '--ssh-config', config, '--max-jobs', '0', '--no-out-link'], env);
  };

  it('builds with an encrypted default ~/.ssh/id_ed25519 whose key is in ssh-agent', async () => {
    const before = acceptedKeys().length;
    const r = await build(sshConfig('defaults_config', []), { ...NIX_ENV, HOME: home, SSH_AUTH_SOCK: agentSocket });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/1 built/);
    // The agent's copy of the default identity went first (ssh's order), and it logged in.
    expect(acceptedKeys().slice(before)[0]).toBe(agentKey.fingerprint);
  });

  it('skips a missing and an encrypted IdentityFile and logs in with the agent', async () => {
    const config = sshConfig('skipping_config', [`IdentityFile ${join(home, '.ssh', 'id_rsa')}`, `IdentityFile ${encryptedNamed}`]);
    const before = acceptedKeys().length;
    const r = await build(config, { ...NIX_ENV, HOME: home, SSH_AUTH_SOCK: agentSocket });
    expect(r.code, r.stderr).toBe(0);
    expect(acceptedKeys().length).toBeGreaterThan(before);
  });

  it('with IdentitiesOnly offers only the agent key an IdentityFile names, first', async () => {
    const machine = { hostName: 'ruby', address: '127.0.0.1', port: ruby().port, sshUser: 'root', systems: [], supportedFeatures: [], mandatoryFeatures: [], maxJobs: 1, speedFactor: 1 };
    const both = await clientAuth({ ...machine, identityFiles: [join(home, '.ssh', 'id_ed25519')] }, { agentSocket });
    expect(both.offered).toHaveLength(2);
    expect(both.offered[0]).toContain(join(home, '.ssh', 'id_ed25519'));
    const only = await clientAuth({ ...machine, identityFiles: [join(home, '.ssh', 'id_ed25519')], identitiesOnly: true }, { agentSocket });
    expect(only.offered).toEqual([`ssh-agent key ${join(home, '.ssh', 'id_ed25519')}`]);
  });

  it('fails only when nothing authenticates, saying what was offered and why each file was skipped', async () => {
    const config = sshConfig('no_agent_config', [`IdentityFile ${join(home, '.ssh', 'id_rsa')}`, `IdentityFile ${encryptedNamed}`]);
    const env: NodeJS.ProcessEnv = { ...NIX_ENV, HOME: home };
    delete env.SSH_AUTH_SOCK;
    const r = await build(config, env);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('ruby refused login as root: had no key to offer');
    expect(r.stderr).toContain(`${join(home, '.ssh', 'id_rsa')} (does not exist)`);
    expect(r.stderr).toContain(`${encryptedNamed} (passphrase-protected and not loaded in ssh-agent`);
    expect(r.stderr).not.toMatch(/internal error|KeyFileError/);
  });
});
