import { describe, expect, it } from 'vitest';
import { SshConfigError } from '../../src/config/errors.js';
import { parseNixSshOpts } from '../../src/config/nixSshOpts.js';
import { parseSshConfig, resolveSshHost, type SshLocalContext } from '../../src/config/sshConfig.js';
import { describeRoute, resolveSshEndpoint, routeOf, unhonouredWarning } from '../../src/config/sshEndpoints.js';
import { parseJumpHosts } from '../../src/config/sshJumpHosts.js';
import { parseSshTime } from '../../src/config/sshTime.js';

const local: SshLocalContext = { homeDir: '/home/me', localUser: 'me', localHostName: 'desk.example.org', uid: 1000 };
const context = (text: string) => ({ configs: [parseSshConfig('ssh_config', text, '/home/me/.ssh')], include: () => [], local });
const resolve = (alias: string, text: string) => resolveSshHost(alias, context(text).configs, local);

describe('ProxyJump and ProxyCommand in ssh_config', () => {
  it('reads ProxyJump hops as OpenSSH does: user@host:port, [v6]:port, ssh:// URIs', () => {
    expect(parseJumpHosts('bastion,ops@10.0.0.1:2222,ssh://root@gw:23,[fe80::1]:24,u@[::1]', 'x')).toEqual([
      { host: 'bastion' },
      { host: '10.0.0.1', user: 'ops', port: 2222 },
      { host: 'gw', user: 'root', port: 23 },
      { host: 'fe80::1', port: 24 },
      { host: '::1', user: 'u' },
    ]);
    expect(() => parseJumpHosts('a,,b', 'ProxyJump in f')).toThrow(new SshConfigError('ProxyJump in f: "a,,b" has an empty jump host'));
    expect(() => parseJumpHosts('a:99999', 'ProxyJump in f')).toThrow(/port "99999", not a number from 1 to 65535/);
  });

  it('keeps whichever of ProxyJump and ProxyCommand comes first, and none for either means direct', () => {
    expect(resolve('ruby', 'Host ruby\n  ProxyJump bastion\n  ProxyCommand nc %h %p')).toMatchObject({ proxyJump: [{ host: 'bastion' }] });
    expect(resolve('ruby', 'Host ruby\n  ProxyCommand nc %h %p\n  ProxyJump bastion').proxyJump).toBeUndefined();
    expect(resolve('ruby', 'Host ruby\n  ProxyCommand nc %h %p\nHost *\n  ProxyJump bastion').proxyCommand).toBe('nc ruby 22');
    const direct = resolve('bastion', 'Host bastion\n  ProxyJump none\nHost *\n  ProxyJump bastion\n  ProxyCommand nc %h %p');
    expect(direct.proxyJump).toBeUndefined();
    expect(direct.proxyCommand).toBeUndefined();
    expect(resolve('ruby', 'Host ruby\n  ProxyCommand none\nHost *\n  ProxyJump bastion').proxyJump).toBeUndefined();
  });

  it('expands %h %p %r %n %% in ProxyCommand after HostName, Port and User, and keeps its quoting', () => {
    const text = 'Host ruby\n  HostName 10.1.2.3\n  Port 2201\n  User builder\n  ProxyCommand ssh -W "[%h]:%p" -l %r gw-%n 100%%';
    expect(resolve('ruby', text).proxyCommand).toBe('ssh -W "[10.1.2.3]:2201" -l builder gw-ruby 100%');
    expect(() => resolve('ruby', 'ProxyCommand nc %h %z')).toThrow(new SshConfigError('ProxyCommand in ssh_config: unknown token "%z" in "nc %h %z"'));
  });

  it('reads ConnectTimeout, ServerAliveInterval and ServerAliveCountMax in OpenSSH time syntax', () => {
    expect(parseSshTime('90')).toBe(90);
    expect(parseSshTime('1m30s')).toBe(90);
    expect(parseSshTime('1h')).toBe(3600);
    expect(parseSshTime('soon')).toBeUndefined();
    expect(resolve('ruby', 'ConnectTimeout 1m\nServerAliveInterval 15\nServerAliveCountMax 4')).toMatchObject({
      connectTimeoutSeconds: 60,
      serverAliveIntervalSeconds: 15,
      serverAliveCountMax: 4,
    });
    expect(resolve('ruby', 'ConnectTimeout 0\nServerAliveInterval 0')).toMatchObject({ serverAliveIntervalSeconds: 0 });
    expect(resolve('ruby', 'ConnectTimeout 0').connectTimeoutSeconds).toBeUndefined();
    expect(() => resolve('ruby', 'ServerAliveInterval often')).toThrow(new SshConfigError('ssh_config: ServerAliveInterval "often" for host ruby is not a time (seconds, or e.g. 1m30s)'));
    expect(() => resolve('ruby', 'ServerAliveCountMax -1')).toThrow(/ServerAliveCountMax "-1" for host ruby is not a whole number/);
  });
});

describe('routes through jump hosts', () => {
  const config = [
    'Host ruby',
    '  HostName 10.1.2.3',
    '  ProxyJump ops@gw1:2201,gw2',
    'Host gw1',
    '  HostName 10.0.0.1',
    '  User cfg-user',
    '  Port 22',
    '  IdentityFile ~/.ssh/gw1',
    'Host gw2',
    '  HostName 10.0.0.2',
    '  HostKeyAlias gw2-key',
    '  ConnectTimeout 7',
    'Host kana',
    '  ProxyCommand ssh -W %h:%p gw1',
    'Host loop',
    '  ProxyJump loop',
  ].join('\n');

  it('connects the first hop first; each hop gets its own Host block, and the ProxyJump user and port win over it', () => {
    const { endpoint } = resolveSshEndpoint('ruby', context(config));
    expect(endpoint).toMatchObject({ hostName: 'ruby', address: '10.1.2.3', port: 22 });
    const gw2 = endpoint.proxy && 'jump' in endpoint.proxy ? endpoint.proxy.jump : undefined;
    expect(gw2).toMatchObject({ hostName: 'gw2', address: '10.0.0.2', hostKeyAlias: 'gw2-key', connectTimeoutMs: 7000 });
    const gw1 = gw2?.proxy && 'jump' in gw2.proxy ? gw2.proxy.jump : undefined;
    expect(gw1).toMatchObject({ hostName: 'gw1', address: '10.0.0.1', port: 2201, sshUser: 'ops', identityFiles: ['/home/me/.ssh/gw1'] });
    expect(gw1?.proxy).toBeUndefined();
    expect(routeOf(endpoint)).toEqual([
      { jumpHost: 'gw1', user: 'ops', address: '10.0.0.1', port: 2201 },
      { jumpHost: 'gw2', address: '10.0.0.2', port: 22 },
    ]);
    expect(describeRoute(endpoint)).toBe('via ops@10.0.0.1:2201, 10.0.0.2:22');
  });

  it('gives the first hop its own ProxyJump or ProxyCommand, and shows a ProxyCommand route', () => {
    const { endpoint } = resolveSshEndpoint('ruby', context(`${config}\nHost gw1\n  ProxyCommand nc %h %p`));
    expect(describeRoute(endpoint)).toBe('via ProxyCommand nc 10.0.0.1 2201, ops@10.0.0.1:2201, 10.0.0.2:22');
    expect(describeRoute(resolveSshEndpoint('kana', context(config)).endpoint)).toBe('via ProxyCommand ssh -W kana:22 gw1');
    expect(describeRoute(resolveSshEndpoint('gw1', context(config)).endpoint)).toBeUndefined();
  });

  it('stops a ProxyJump loop with an error that says how to break it', () => {
    expect(() => resolveSshEndpoint('loop', context(config))).toThrow(/ProxyJump for loop: more than 16 jump hosts on the way \(a loop in ssh_config\?/);
  });
});

describe('options offload cannot honour', () => {
  it('are collected per host with where they were set, and make one warning line for the run', () => {
    const text = [
      'IgnoreUnknown UseKeychain,Tag*',
      'Host ruby kana',
      '  ControlMaster auto',
      '  ControlPath ~/.ssh/cm-%C',
      '  ControlPersist 10m',
      '  CertificateFile ~/.ssh/id_ed25519-cert.pub',
      '  ForwardAgent yes',
      '  LocalForward 8080 localhost:80',
      '  Tagline x',
      '  Frobnicate yes',
      'Host *',
      '  ControlMaster no',
      '  SendEnv LANG LC_*',
      '  GSSAPIAuthentication yes',
    ].join('\n');
    const ruby = resolve('ruby', text);
    expect(ruby.certificateFiles).toEqual(['/home/me/.ssh/id_ed25519-cert.pub']);
    expect(ruby.unhonoured?.map((o) => o.keyword)).toEqual(['ControlMaster', 'ControlPath', 'ControlPersist', 'LocalForward', 'Frobnicate', 'CertificateFile']);
    expect(ruby.unhonoured?.find((o) => o.keyword === 'Frobnicate')).toEqual({ keyword: 'Frobnicate', from: 'ssh_config', unknown: true });
    // A value that changes nothing (ControlMaster no) and options without effect on a batch session are not reported.
    expect(resolve('other', text).unhonoured).toBeUndefined();
    const line = unhonouredWarning([
      ...resolveSshEndpoint('ruby', context(text)).unhonoured,
      ...resolveSshEndpoint('kana', context(text)).unhonoured,
    ]);
    expect(line).toBe(
      'ssh_config options offload cannot honour, ignored: ControlMaster (ruby, kana; offload keeps one connection per builder itself), ' +
        'ControlPath (ruby, kana; offload keeps one connection per builder itself), ControlPersist (ruby, kana; offload keeps one connection per builder itself), ' +
        'LocalForward (ruby, kana), Frobnicate (ruby, kana; not an option offload knows), ' +
        'CertificateFile (ruby, kana; ssh2 cannot log in with an OpenSSH certificate; the plain keys are offered) [set in ssh_config]',
    );
    expect(unhonouredWarning([])).toBeUndefined();
  });

  it('names a jump host whose block sets one', () => {
    const { unhonoured } = resolveSshEndpoint('ruby', context('Host ruby\n  ProxyJump gw\nHost gw\n  ControlMaster yes'));
    expect(unhonoured).toEqual([{ host: 'gw', options: [{ keyword: 'ControlMaster', from: 'ssh_config', why: 'offload keeps one connection per builder itself' }] }]);
  });
});

describe('NIX_SSHOPTS', () => {
  it('splits words like a shell without expanding anything', () => {
    const opts = parseNixSshOpts(`-o 'ProxyCommand=ssh -W %h:%p "gw 1"' -o"User=a b" -i ~/k\\ 1 -p 2222 -o Port\\ 1 -F $HOME/cfg`);
    expect(opts.options).toEqual([
      { keyword: 'ProxyCommand', value: 'ssh -W %h:%p "gw 1"', from: 'NIX_SSHOPTS' },
      { keyword: 'User', value: 'a b', from: 'NIX_SSHOPTS' },
      { keyword: 'IdentityFile', value: '~/k 1', from: 'NIX_SSHOPTS' },
      { keyword: 'Port', value: '2222', from: 'NIX_SSHOPTS' },
      { keyword: 'Port', value: '1', from: 'NIX_SSHOPTS' },
    ]);
    expect(opts.configFile).toBe('$HOME/cfg');
    expect(opts.ignored).toEqual([]);
    expect(parseNixSshOpts(undefined)).toEqual({ options: [], ignored: [] });
    expect(parseNixSshOpts('  ')).toEqual({ options: [], ignored: [] });
  });

  it('reads getopt clusters: -oKey=Value, -p2222, -Cl user, -J; warns about flags for ssh itself', () => {
    const opts = parseNixSshOpts('-oStrictHostKeyChecking=accept-new -p2222 -Cl root -J gw1,gw2 -xaT -vv -L 8080:x:80 -M -S/tmp/cm -o ControlMaster=auto');
    expect(opts.options.map((o) => [o.keyword, o.value])).toEqual([
      ['StrictHostKeyChecking', 'accept-new'],
      ['Port', '2222'],
      ['Compression', 'yes'],
      ['User', 'root'],
      ['ProxyJump', 'gw1,gw2'],
      ['ControlMaster', 'auto'],
    ]);
    expect(opts.ignored).toEqual(['-v', '-v', '-L 8080:x:80', '-M', '-S /tmp/cm']);
  });

  it('refuses what ssh would refuse, naming NIX_SSHOPTS', () => {
    expect(() => parseNixSshOpts('-p')).toThrow(new SshConfigError('NIX_SSHOPTS: "-p" needs an argument'));
    expect(() => parseNixSshOpts('-Z')).toThrow(new SshConfigError('NIX_SSHOPTS: "-Z" is not an ssh option'));
    expect(() => parseNixSshOpts('builder')).toThrow(/"builder" is not an ssh option/);
    expect(() => parseNixSshOpts('-o Port')).toThrow(new SshConfigError('NIX_SSHOPTS: -o "Port" is not Keyword=value'));
    expect(() => parseNixSshOpts('-o Host=x')).toThrow(/-o Host is not allowed on the command line/);
    expect(() => parseNixSshOpts(`-o 'User=a`)).toThrow(/unterminated single quote/);
  });

  it('wins over the machines file and ssh_config as ssh command-line options do; the first value counts; -J replaces a configured ProxyCommand', () => {
    const text = 'Host ruby\n  User cfg\n  Port 2201\n  IdentityFile ~/.ssh/cfg\n  ProxyCommand nc %h %p\n  ConnectTimeout 3';
    const opts = parseNixSshOpts('-l cli -o User=later -p 2222 -i /k/cli -J gw -o ConnectTimeout=9 -o ControlPath=/tmp/x');
    const { endpoint, unhonoured } = resolveSshEndpoint('ruby', context(text), { user: 'from-file', port: 22, sshKey: '/k/file' }, opts.options);
    expect(endpoint).toMatchObject({ sshUser: 'cli', port: 2222, identityFiles: ['/k/file', '/k/cli', '/home/me/.ssh/cfg'], connectTimeoutMs: 9000 });
    expect(describeRoute(endpoint)).toBe('via gw:22');
    expect(unhonoured).toEqual([{ host: 'ruby', options: [{ keyword: 'ControlPath', from: 'NIX_SSHOPTS', why: 'offload keeps one connection per builder itself' }] }]);
    // Without NIX_SSHOPTS the machines file's user and port win over ssh_config.
    expect(resolveSshEndpoint('ruby', context(text), { user: 'from-file', port: 22 }).endpoint).toMatchObject({ sshUser: 'from-file', port: 22 });
  });
});
