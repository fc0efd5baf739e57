import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SshConfigError } from '../../src/config/errors.js';
import { parseSshConfig, resolveSshHost, type SshLocalContext } from '../../src/config/sshConfig.js';
import { loadSshConfigFiles } from '../../src/config/sshConfigFiles.js';

const fixtures = fileURLToPath(new URL('../../fixtures/machines/', import.meta.url));
const local: SshLocalContext = { homeDir: '/home/me', localUser: 'me', localHostName: 'desk.example.org', uid: 1000 };

const resolve = (alias: string, text: string, given = {}) =>
  resolveSshHost(alias, [parseSshConfig('ssh_config', text, '/home/me/.ssh')], local, given);

describe('ssh_config host resolution', () => {
  it('maps an alias to HostName, Port, User and IdentityFile', () => {
    expect(resolve('ruby', 'Host ruby\n  HostName 10.0.0.2\n  Port 2201\n  User root\n  IdentityFile ~/.ssh/ruby')).toEqual({
      hostName: '10.0.0.2',
      port: 2201,
      user: 'root',
      identityFiles: ['/home/me/.ssh/ruby'],
      acceptUnknownHostKey: false,
      warnings: [],
    });
  });

  it('reads the host-key and identity options: known_hosts files, HostKeyAlias, StrictHostKeyChecking, HashKnownHosts, IdentitiesOnly, IdentityAgent', () => {
    const text = [
      'Host ruby',
      '  UserKnownHostsFile ~/.ssh/a ~/.ssh/b',
      '  GlobalKnownHostsFile /etc/offload_hosts',
      '  HostKeyAlias ruby-key',
      '  StrictHostKeyChecking accept-new',
      '  HashKnownHosts yes',
      '  IdentitiesOnly yes',
      '  IdentityAgent ~/agent.sock',
    ].join('\n');
    expect(resolve('ruby', text)).toMatchObject({
      userKnownHostsFiles: ['/home/me/.ssh/a', '/home/me/.ssh/b'],
      globalKnownHostsFiles: ['/etc/offload_hosts'],
      hostKeyAlias: 'ruby-key',
      strictHostKeyChecking: 'accept-new',
      acceptUnknownHostKey: true,
      hashKnownHosts: true,
      identitiesOnly: true,
      identityAgent: '/home/me/agent.sock',
    });
    expect(resolve('ruby', 'Host ruby\n  StrictHostKeyChecking off\n  IdentityAgent none')).toMatchObject({ strictHostKeyChecking: 'no', identityAgent: 'none' });
    expect(resolve('ruby', 'Host ruby\n  IdentityAgent SSH_AUTH_SOCK').identityAgent).toBeUndefined();
  });

  it('leaves an unknown alias as it is', () => {
    expect(resolve('kana', 'Host ruby\n  HostName 10.0.0.2')).toEqual({
      hostName: 'kana',
      identityFiles: [],
      acceptUnknownHostKey: false,
      warnings: [],
    });
  });

  it('keeps the first value obtained and accumulates IdentityFile', () => {
    const text = 'Host ruby\n  User first\n  IdentityFile /k/one\nHost r*\n  User second\n  Port 1\n  IdentityFile /k/two\nHost *\n  Port 2';
    expect(resolve('ruby', text)).toMatchObject({ user: 'first', port: 1, identityFiles: ['/k/one', '/k/two'] });
  });

  it('applies top-level options before the first Host to every host', () => {
    expect(resolve('x', 'User everyone\nHost x\n  User x-user')).toMatchObject({ user: 'everyone' });
  });

  it('matches wildcards: "*" any run, "?" exactly one character, case-insensitively', () => {
    const text = 'Host build-?\n  Port 1\nHost *.LAB\n  Port 2\nHost *\n  Port 3';
    expect(resolve('build-1', text).port).toBe(1);
    expect(resolve('build-10', text).port).toBe(3);
    expect(resolve('build-', text).port).toBe(3);
    expect(resolve('ruby.lab', text).port).toBe(2);
  });

  it('skips a Host line when a negated pattern matches, whatever else matches', () => {
    const text = 'Host *.lab !secret.lab\n  User lab\nHost !other\n  Port 7';
    expect(resolve('ruby.lab', text)).toMatchObject({ user: 'lab' });
    expect(resolve('secret.lab', text).user).toBeUndefined();
    // A line with only a negated pattern matches nothing.
    expect(resolve('ruby.lab', text).port).toBeUndefined();
  });

  it('lets the machines file (like the ssh command line) win over User and Port', () => {
    expect(resolve('ruby', 'Host ruby\n  User cfg\n  Port 2201', { user: 'root', port: 22 })).toMatchObject({ user: 'root', port: 22 });
  });

  it('expands ~ and %-tokens in IdentityFile and UserKnownHostsFile as ssh does', () => {
    const text = [
      'Host ruby',
      '  HostName %h.example.net',
      '  User builder',
      '  IdentityFile ~/.ssh/%r@%h:%p',
      '  IdentityFile %d/keys/%u-%n-%i-%L-%%',
      '  UserKnownHostsFile ~/.ssh/kh-%n /etc/kh',
    ].join('\n');
    expect(resolve('ruby', text)).toMatchObject({
      hostName: 'ruby.example.net',
      identityFiles: ['/home/me/.ssh/builder@ruby.example.net:22', '/home/me/keys/me-ruby-1000-desk-%'],
      userKnownHostsFiles: ['/home/me/.ssh/kh-ruby', '/etc/kh'],
    });
    // %r is the local user when no User is given.
    expect(resolve('kana', 'IdentityFile /k/%r').identityFiles).toEqual(['/k/me']);
  });

  it('drops IdentityFile none and rejects tokens ssh does not know', () => {
    expect(resolve('ruby', 'IdentityFile none\nIdentityFile /k/a').identityFiles).toEqual(['/k/a']);
    expect(() => resolve('ruby', 'IdentityFile /k/%z')).toThrow(
      new SshConfigError('IdentityFile in ssh_config: unknown token "%z" in "/k/%z"'),
    );
  });

  it.each([
    ['no', true],
    ['off', true],
    ['false', true],
    ['accept-new', true],
    ['Accept-New', true],
    ['yes', false],
    ['ask', false],
  ])('StrictHostKeyChecking %s → acceptUnknownHostKey %s', (value, accept) => {
    expect(resolve('ruby', `Host ruby\n  StrictHostKeyChecking ${value}`).acceptUnknownHostKey).toBe(accept);
  });

  it('names the file, host and value of a bad Port or StrictHostKeyChecking', () => {
    expect(() => resolve('ruby', 'Host ruby\n  Port ssh')).toThrow(
      new SshConfigError('ssh_config: Port "ssh" for host ruby is not a number from 1 to 65535'),
    );
    expect(() => resolve('ruby', 'StrictHostKeyChecking maybe')).toThrow(
      new SshConfigError('ssh_config: StrictHostKeyChecking "maybe" for host ruby is not one of yes, no, ask, accept-new, off'),
    );
  });

  it('reads Compression yes as a compressed link and refuses what OpenSSH refuses', () => {
    expect(resolve('ruby', 'Host ruby\n  Compression yes\nHost *\n  Compression no').compression).toBe(true);
    expect(resolve('kana', 'Host ruby\n  Compression yes\nHost *\n  Compression no').compression).toBeUndefined();
    expect(() => resolve('ruby', 'Compression fast')).toThrow(new SshConfigError('ssh_config: fast is not yes or no (compression for host ruby)'));
  });

  it('evaluates Match host/originalhost/user/all and skips Match exec without running it', () => {
    const text = [
      'Host ruby',
      '  HostName ruby.example.net',
      'Match exec "touch /tmp/offload-must-not-run"',
      '  Port 9',
      'Match host *.example.net user me',
      '  Port 2201',
      'Match originalhost ruby',
      '  User via-original',
      'Match !host *.example.net',
      '  IdentityFile /k/not-example',
      'Match all',
      '  IdentityFile /k/all',
    ].join('\n');
    const settings = resolve('ruby', text);
    expect(settings).toMatchObject({ port: 2201, user: 'via-original', identityFiles: ['/k/all'] });
    expect(settings.warnings).toEqual(['ssh_config: "Match exec" is not evaluated by offload; that Match block was skipped']);
    expect(existsSync('/tmp/offload-must-not-run')).toBe(false);
    expect(resolve('kana', text).identityFiles).toEqual(['/k/not-example', '/k/all']);
  });

  it('names the file that cannot be parsed', () => {
    expect(() => parseSshConfig('/x/config', 'Host "unterminated\n', '/x')).toThrow(/^\/x\/config: cannot parse ssh_config: /);
  });
});

describe('ssh_config files', () => {
  const home = `${fixtures}home`;
  const systemConfigFile = `${fixtures}etc-ssh/ssh_config`;
  const resolveFromFiles = (alias: string, options: { sshConfigFile?: string } = {}) => {
    const { configs, include } = loadSshConfigFiles({ homeDir: home, systemConfigFile, ...options });
    return resolveSshHost(alias, configs, { ...local, homeDir: home }, {}, include);
  };

  it('reads the user file before the system file, so user values win', () => {
    expect(resolveFromFiles('ruby')).toEqual({
      hostName: '10.0.0.2',
      port: 2201,
      user: 'builder',
      identityFiles: [`${home}/.ssh/id_everyone`, `${home}/.ssh/ruby_builder@10.0.0.2:2201`, `${home}/.ssh/id_ed25519`],
      userKnownHostsFiles: [`${home}/.ssh/known_hosts.d/ruby`, '/etc/ssh/cluster_known_hosts'],
      // Only the system file sets it.
      acceptUnknownHostKey: true,
      strictHostKeyChecking: 'no',
      warnings: [],
    });
  });

  it('expands Include relative to ~/.ssh with wildcards, and the system file fills what is left', () => {
    expect(resolveFromFiles('kana')).toMatchObject({
      hostName: 'kana.internal',
      port: 2299,
      user: 'system',
      identityFiles: [`${home}/.ssh/id_everyone`, `${home}/.ssh/id_ed25519`],
    });
  });

  it('keeps lines after an Include in their section and reads an Include in a non-matching section not at all', () => {
    // config.d/10-kana.conf ends inside "Host kana", yet the IdentityFile after its Include applies to every host;
    // ruby.d/extra (included inside "Host ruby") would give *.lab port 2202 if it were read for onyx.lab.
    expect(resolveFromFiles('onyx.lab')).toEqual({
      hostName: 'onyx.lab',
      user: 'lab',
      identityFiles: [`${home}/.ssh/id_everyone`, `${home}/.ssh/id_ed25519`],
      acceptUnknownHostKey: true,
      strictHostKeyChecking: 'accept-new',
      warnings: [],
    });
    expect(resolveFromFiles('secret.lab')).toMatchObject({ acceptUnknownHostKey: false });
    expect(resolveFromFiles('secret.lab').user).toBeUndefined();
  });

  it('reads only --ssh-config when given (as ssh -F)', () => {
    const settings = resolveFromFiles('ruby', { sshConfigFile: systemConfigFile });
    expect(settings).toMatchObject({ hostName: 'ruby', port: 2299, user: 'system', identityFiles: [] });
  });

  it('fails when --ssh-config does not exist, and names it', () => {
    expect(() => loadSshConfigFiles({ homeDir: home, sshConfigFile: `${fixtures}nope` })).toThrow(
      new SshConfigError(`ssh_config file ${fixtures}nope (--ssh-config) does not exist`),
    );
  });

  it('reads nothing when neither file exists', () => {
    expect(loadSshConfigFiles({ homeDir: `${fixtures}no-home`, systemConfigFile: `${fixtures}no-file` }).configs).toEqual([]);
  });

  it('stops an Include loop', () => {
    const config = parseSshConfig('loop', 'Include loop', '/x');
    expect(() => resolveSshHost('ruby', [config], local, {}, () => [config])).toThrow(
      new SshConfigError('loop: Include nested more than 16 deep'),
    );
  });
});
